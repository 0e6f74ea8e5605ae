"""Corrections and retractions: a correction reaches exactly those who received the original notice
(its deliveries the provider accepted, sent or delivered), on the same channels, and nobody else —
not members who joined a list since, nor anyone who has opted out of that channel since."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.outbound import fanout
from relay.infra.db import transaction
from relay.model.delivery_states import ACCEPTED, DELIVERED, SENT
from relay.model.tables import Delivery, Member, Notice
from relay.model.notice_refs import deliveries_filter
from relay.notices.audience import Recipient, recipients_from

RECEIVED = (ACCEPTED, SENT, DELIVERED)


def received(session: Session, original: Notice) -> dict[int, set[str]]:
    """member id -> the channels on which the original notice reached them."""
    reached: dict[int, set[str]] = {}
    rows = session.execute(select(Delivery.member_id, Delivery.channel).where(
        deliveries_filter(original), Delivery.status.in_(RECEIVED), Delivery.member_id.is_not(None)))
    for member_id, channel in rows:
        reached.setdefault(member_id, set()).add(channel)
    return reached


def original_audience(session: Session, correction: Notice, wanted: set[str]) -> list[Recipient]:
    """The correction's recipients: the original's, on the channels it reached them on, still reachable."""
    original = session.get(Notice, correction.corrects_notice_id)
    if original is None:
        return []
    reached = received(session, original)
    if not reached:
        return []
    members = []
    ids = sorted(reached)
    for start in range(0, len(ids), 500):
        members.extend(fanout.reachable_members(session, Member.id.in_(ids[start:start + 500])))
    return recipients_from(members, wanted, allowed=reached)


def correct_notice(services, notice_id: int, text: str, created_by: int | None = None,
                   severity: str | None = None, actor=None):
    """Create and send a correction of a sent notice to exactly its recipients; returns the NoticeResult."""
    from relay.notices.lifecycle import create_notice, send_notice

    with transaction(services.sessions) as session:
        correction = create_notice(session, kind="correction", body=text,
                                   corrects_notice_id=notice_id, created_by=created_by, severity=severity)
        correction_id = correction.id
    from relay.infra import audit

    return send_notice(services, correction_id, actor=actor or audit.SYSTEM)
