"""Stored webhooks that failed: listing them and running one again (`relay events list|retry`).

An event whose processing raised (not a transient database error: relay/inbound/record.py `attempt`) keeps
its last error and waits for the sweeper; after MAX_ATTEMPTS it is set aside as `failed`
(relay/sweeper.py). Once the cause is fixed (a bug, a bad template), an operator re-runs it: its
attempts start again from zero and it is queued; processing stays idempotent (one post per inbound
event), so a retry never posts twice. Each retry is in the audit trail."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update

from relay.infra import audit
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.model.tables import InboundEvent, utcnow

log = logging.getLogger(__name__)

FAILED = "failed"


@dataclass(frozen=True)
class Troubled:
    id: int
    kind: str
    provider: str
    state: str  # "set aside" (the sweeper gave up) or "failing" (still retried)
    attempts: int
    last_error: str
    received_at: datetime


class NotRetryable(Exception):
    """The event does not exist, or was processed (a retry would change nothing)."""


def troubled(session, limit: int = 100) -> list[Troubled]:
    """Set-aside events and events still waiting after a failed attempt, oldest first."""
    rows = session.scalars(select(InboundEvent).where(or_(
        InboundEvent.outcome == FAILED,
        and_(InboundEvent.processed_at.is_(None), InboundEvent.attempts > 0, InboundEvent.last_error != ""),
    )).order_by(InboundEvent.id).limit(limit))
    return [Troubled(e.id, e.kind, e.provider, "set aside" if e.outcome == FAILED else "failing", e.attempts,
                     e.last_error or e.detail, e.received_at) for e in rows]


def retry(services, event_id: int, actor: audit.Actor) -> InboundEvent:
    """Reset the event's attempts, make it unprocessed again, audit it, and queue it (after the commit)."""
    with transaction(services.sessions) as session:
        event = session.get(InboundEvent, event_id, with_for_update=True)
        if event is None:
            raise NotRetryable(f"no inbound event {event_id}")
        if event.processed_at is not None and event.outcome != FAILED:
            raise NotRetryable(f"inbound event {event_id} was processed ({event.outcome}); nothing to retry")
        audit.record(session, "inbound.retry", f"inbound:{event_id}", actor, kind=event.kind,
                     attempts=event.attempts, outcome=event.outcome, last_error=event.last_error[:200])
        session.execute(update(InboundEvent).where(InboundEvent.id == event_id).values(
            attempts=0, processed_at=None, outcome="received", detail="", dispatched_at=utcnow())
            .execution_options(synchronize_session=False))
        kind = event.kind
    queue = services.dispatcher.apply_status if kind == "status" else services.dispatcher.process_inbound
    if not dispatch_safely(queue, event_id):  # the sweeper queues it within minutes
        log.warning("inbound %s: reset for a retry; the sweeper will queue it", event_id)
    with services.sessions() as session:
        return session.get(InboundEvent, event_id)
