"""Corrections and retractions: a correction reaches exactly those who received the original notice
(its deliveries the provider accepted, sent or delivered), on the same channels, and nobody else —
not members who joined a list since, nor anyone who has opted out of that channel since (that audience:
relay/notices/audience.py original_audience)."""
from __future__ import annotations

from sqlalchemy import update

from relay.infra import audit
from relay.infra.db import transaction
from relay.model.tables import Notice
from relay.notices.lifecycle import create_notice, send_notice


def correct_notice(services, notice_id: int, text: str, created_by: int | None = None,
                   severity: str | None = None, actor=None, confirm_identifiers: bool = False):
    """Create and send a correction of a sent notice to exactly its recipients; returns the NoticeResult."""
    with transaction(services.sessions) as session:
        correction = create_notice(session, kind="correction", body=text,
                                   corrects_notice_id=notice_id, created_by=created_by, severity=severity)
        correction_id = correction.id
    try:
        return send_notice(services, correction_id, actor=actor or audit.SYSTEM,
                           confirm_identifiers=confirm_identifiers)
    except Exception:  # refused (issue 16: an identifier not confirmed): the correction is not left as a draft
        with transaction(services.sessions) as session:
            session.execute(update(Notice).where(Notice.id == correction_id, Notice.status == "draft")
                            .values(status="cancelled"))
        raise
