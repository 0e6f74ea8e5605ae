"""The emergency hold: one switch that pauses all outbound sending and resumes it.

The flag lives in the database (table sending_hold, one row), so every web process, worker and the
sweeper see the same state. While it is on, relay/outbound/sending.py leaves each delivery queued (never
failed, never lost) with its next attempt pushed HOLD_RECHECK later and marked error_code "held";
the sweeper re-dispatches no deliveries. Resuming clears those marks and queues every waiting
delivery again. Both changes are audited."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay.infra import audit
from relay.infra.db import transaction
from relay.model.delivery_states import QUEUED
from relay.model.tables import Delivery, SendingHold, utcnow
from relay.outbound.queueing import dispatch_deliveries

log = logging.getLogger(__name__)

HOLD_RECHECK = timedelta(minutes=5)  # a held delivery's next attempt, if nobody resumes sooner
HELD = "held"  # error_code of a delivery waiting for the hold to end


@dataclass(frozen=True)
class HoldState:
    on: bool
    reason: str = ""
    changed_by: str = ""
    changed_at: datetime | None = None


def state(session: Session) -> HoldState:
    row = session.get(SendingHold, 1)
    if row is None:
        return HoldState(False)
    return HoldState(row.held, row.reason, row.changed_by, row.changed_at)


def is_on(session: Session) -> bool:
    """Whether outbound sending is paused right now."""
    return bool(session.scalar(select(SendingHold.held).where(SendingHold.id == 1)))


def defer(session: Session, delivery_id: int, now: datetime | None = None) -> None:
    """Leave a queued delivery waiting for the hold to end (called by sending instead of sending)."""
    now = now or utcnow()
    session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == QUEUED)
                    .values(next_attempt_at=now + HOLD_RECHECK, error_code=HELD,
                            error_message="outbound sending is on hold", updated_at=now)
                    .execution_options(synchronize_session=False))


def _set(session: Session, on: bool, actor: audit.Actor, reason: str) -> bool:
    """Set the flag; True when it changed. The row is locked so two toggles do not interleave."""
    row = session.get(SendingHold, 1, with_for_update=True)
    if row is None:
        row = SendingHold(id=1, held=False)
        session.add(row)
        session.flush()
    if row.held == on:
        return False
    row.held, row.reason, row.changed_by, row.changed_at = on, reason[:300], actor.label, utcnow()
    audit.record(session, "hold.on" if on else "hold.off", "sending", actor, reason=reason[:300])
    return True


def hold_on(services, actor: audit.Actor, reason: str = "") -> bool:
    with transaction(services.sessions) as session:
        changed = _set(session, True, actor, reason)
    if changed:
        log.warning("outbound sending put ON HOLD by %s: %s", actor.label, reason or "(no reason given)")
    return changed


def set_hold(session: Session, on: bool, actor: audit.Actor, reason: str = "") -> bool:
    """Hold or resume inside the caller's transaction (issue 17: HOLD ALL / RESUME ALL by SMS); True when it
    changed. Resuming releases the held deliveries; the caller dispatches them after its commit
    (dispatch_waiting), or the sweeper does."""
    changed = _set(session, on, actor, reason)
    if changed and not on:
        session.execute(update(Delivery).where(Delivery.status == QUEUED, Delivery.error_code == HELD)
                        .values(next_attempt_at=None, error_code=None, error_message=None)
                        .execution_options(synchronize_session=False))
    return changed


def dispatch_waiting(services) -> int:
    """Dispatch every queued delivery that is due (after a resume)."""
    with services.sessions() as session:
        now = utcnow()
        waiting = list(session.scalars(select(Delivery.id).where(
            Delivery.status == QUEUED,
            (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now)).order_by(Delivery.id)))
    for start in range(0, len(waiting), 1000):
        dispatch_deliveries(services, waiting[start:start + 1000])
    return len(waiting)


def hold_off(services, actor: audit.Actor, reason: str = "") -> int:
    """Resume sending: clear the hold and dispatch every queued delivery that is due. Returns how many."""
    with transaction(services.sessions) as session:
        if not set_hold(session, False, actor, reason):
            return 0
        now = utcnow()
        waiting = list(session.scalars(select(Delivery.id).where(
            Delivery.status == QUEUED,
            (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now)).order_by(Delivery.id)))
    log.warning("outbound sending RESUMED by %s; %s queued deliveries dispatched", actor.label, len(waiting))
    for start in range(0, len(waiting), 1000):
        dispatch_deliveries(services, waiting[start:start + 1000])
    return len(waiting)
