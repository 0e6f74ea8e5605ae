"""Raw inbound bodies are not kept for ever: an inbound event's `raw` (an SMS webhook's form) and
`payload` (an email webhook's whole HTTP body) hold clinical text, and are needed only until the
event is processed and for a while after, to look into a problem. The sweeper calls
purge_raw_bodies: events received more than RELAY_RAW_RETENTION ago (default 30 days) and processed
have both emptied and raw_purged_at stamped; the event's metadata (sender, kind, outcome, times)
and the post it made stay. An event not processed yet keeps its body, however old.

Short batches, each its own transaction, so no purge ever holds a long lock on inbound_events (the
webhooks insert there); what is left over is purged on the next sweep. See docs/privacy.md."""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.model.tables import InboundEvent, utcnow

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 20  # at most 10,000 events a sweep; a first run on an old database catches up over a few


def purge_raw_bodies(services, *, batch: int = BATCH, max_batches: int = MAX_BATCHES, now=None) -> int:
    """Empty the raw bodies past the retention; returns how many events were purged. Idempotent."""
    retention = services.settings.raw_retention
    if not retention:
        return 0
    now = now or utcnow()
    cutoff = now - retention
    purged = 0
    for _ in range(max_batches):
        with transaction(services.sessions) as session:
            ids = list(session.scalars(
                select(InboundEvent.id)
                .where(InboundEvent.raw_purged_at.is_(None), InboundEvent.received_at < cutoff,
                       InboundEvent.processed_at.is_not(None))
                .order_by(InboundEvent.received_at).limit(batch)))
            if ids:
                session.execute(update(InboundEvent)
                                .where(InboundEvent.id.in_(ids), InboundEvent.raw_purged_at.is_(None))
                                .values(raw="", payload=None, raw_purged_at=now)
                                .execution_options(synchronize_session=False))
        purged += len(ids)
        if len(ids) < batch:
            break
    if purged:
        log.info("retention: emptied the raw bodies of %s inbound events received before %s", purged,
                 cutoff.isoformat(timespec="seconds"))
    return purged
