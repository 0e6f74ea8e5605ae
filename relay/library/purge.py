"""A discarded draft's content is not kept (issue 15's discard, issue 16's "no patient identifier without its
author's say-so"): a draft is discarded because nobody should publish it (intake mail sent by mistake, which
may name a patient), it is shown nowhere and cannot come back, so the sweeper empties its title and clinical
text and deletes its images, their files too unless another case files the same picture. The row, its number
(never reused) and the audit trail stay; the purge is audited `case.purge`. The intake mail itself is kept as
any inbound event's body is, until RELAY_RAW_RETENTION (relay/inbound/retention.py)."""
from __future__ import annotations

import logging

from sqlalchemy import delete, or_, select

from relay.infra import audit
from relay.infra.db import transaction
from relay.library.cases import DISCARDED
from relay.library.images import delete_after_commit, file_in_use
from relay.library.media_store import media_store_for
from relay.model.tables import Case, CaseImage

log = logging.getLogger(__name__)

TEXT = ("title", "chief_complaint", "symptoms", "exposure_history", "findings")
BATCH = 50  # cases a sweep purges; a first run on an old database catches up over a few sweeps


def purge_discarded(services, *, batch: int = BATCH) -> int:
    """Purge the discarded cases that still hold text or images; returns how many. Idempotent."""
    has_images = select(CaseImage.id).where(CaseImage.case_id == Case.id).exists()
    store = media_store_for(services.settings)
    with transaction(services.sessions) as session:
        cases = list(session.scalars(select(Case).where(
            Case.status == DISCARDED, or_(*(getattr(Case, name) != "" for name in TEXT), has_images))
            .order_by(Case.id).limit(batch).with_for_update(skip_locked=True)))
        names: set[str] = set()
        for case in cases:
            images = list(session.scalars(select(CaseImage).where(CaseImage.case_id == case.id)))
            names.update(name for image in images for name in (image.stored_name, image.thumbnail_name) if name)
            session.execute(delete(CaseImage).where(CaseImage.case_id == case.id))
            for name in TEXT:
                setattr(case, name, "")
            audit.record(session, "case.purge", f"case:{case.code}", audit.SYSTEM, images=len(images))
            log.info("case %s: discarded, its text and %d image(s) purged", case.code, len(images))
        delete_after_commit(session, store, [name for name in sorted(names)
                                             if not file_in_use(session, name, other_than=0)])
    return len(cases)
