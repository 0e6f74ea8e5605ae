"""Delivery status: one explicit transition table, so late or out-of-order reports never move a
delivery backwards, and an atomic claim, so a redelivered task never sends twice."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, false, or_, select, update
from sqlalchemy.orm import Session

from relay.infra.storage import in_values
from relay.model.delivery_states import (
    ACCEPTED,
    DELIVERED,
    FAILED,
    HELD,
    OPTED_OUT,
    QUEUED,
    RATE_LIMITED,
    READ,
    SENDING,
    SENT,
    UNDELIVERED,
)
from relay.model.tables import Delivery, utcnow

# status -> the statuses it may move to. Anything else is ignored (and logged by the caller).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SENDING, FAILED, OPTED_OUT, HELD}),
    SENDING: frozenset({QUEUED, ACCEPTED, SENT, DELIVERED, READ, UNDELIVERED, FAILED, OPTED_OUT}),
    HELD: frozenset({QUEUED, FAILED, OPTED_OUT}),
    ACCEPTED: frozenset({SENT, DELIVERED, READ, UNDELIVERED, FAILED}),
    SENT: frozenset({DELIVERED, READ, UNDELIVERED, FAILED}),
    DELIVERED: frozenset({READ}),  # WhatsApp's read receipt comes after delivered (issue 19)
    READ: frozenset(),
    UNDELIVERED: frozenset(),
    FAILED: frozenset(),
    OPTED_OUT: frozenset(),
}


def can_move(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def _claimable(now: datetime):
    """Waiting and due, or sending with an expired lease (a crashed sender's): as one CASE on the status, which
    PostgreSQL cannot serve from ix_deliveries_status (it cannot prove the index's `status IN (...)` from it), so
    a claim finds its rows by primary key. With the same condition as an OR, a planner that thought the queued
    rows few (no statistics yet on a queue just planned, or a history of mostly sent deliveries) read every queued
    row of the broadcast to claim a batch of 250: 16-28 ms a batch at 12,000 queued, against 3-5 ms, and growing
    with the queue (issue 18, docs/scale.md)."""
    return case(
        (Delivery.status == QUEUED, or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)),
        (Delivery.status == SENDING, Delivery.lease_until < now),
        else_=false())


def claim(session: Session, delivery_id: int, lease: timedelta, now: datetime | None = None) -> bool:
    """Atomically take a delivery for sending. Exactly one caller wins; the lease lets a crashed
    sender's work be taken again once it expires."""
    now = now or utcnow()
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, _claimable(now))
        .values(status=SENDING, lease_until=now + lease, attempts=Delivery.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result


def claim_many(session: Session, delivery_ids, lease: timedelta, now: datetime | None = None) -> list[int]:
    """claim() for a batch in one statement (UPDATE ... RETURNING): each delivery is still won by
    exactly one caller, row by row; returns the ids this caller won."""
    now = now or utcnow()
    if not delivery_ids:
        return []
    result = session.execute(
        update(Delivery)
        .where(in_values(session, Delivery.id, delivery_ids), _claimable(now))
        .values(status=SENDING, lease_until=now + lease, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


def move(session: Session, delivery: Delivery, new: str, **values) -> bool:
    """Move `delivery` to `new` if the table allows it; return whether it moved."""
    if delivery.status == new:
        return False
    if not can_move(delivery.status, new):
        return False
    delivery.status = new
    for key, value in values.items():
        setattr(delivery, key, value)
    return True


def due_for_dispatch(session: Session, stale_after: timedelta, limit: int = 1000,
                     now: datetime | None = None) -> list[int]:
    """Deliveries that should be in the queue but may not be: never dispatched, dispatched long
    ago and still queued, or sending with an expired lease (a crashed worker)."""
    now = now or utcnow()
    stale = now - stale_after
    rows = session.execute(
        select(Delivery.id)
        .where(
            or_(
                and_(Delivery.status == QUEUED,
                     or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                     or_(and_(Delivery.dispatched_at.is_(None), Delivery.created_at < stale),
                         Delivery.dispatched_at < stale)),
                and_(Delivery.status == SENDING, Delivery.lease_until < now),
            )
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [r[0] for r in rows]


def booked_soon(session: Session, ahead: timedelta, limit: int = 1000,
                now: datetime | None = None) -> list[tuple[int, datetime]]:
    """Deliveries waiting for a rate-limit slot they booked (RATE_LIMITED) that comes within `ahead`
    and that nobody has queued for it yet: (id, when it may be claimed). Queueing one stamps its
    dispatched_at at that time or later, which takes it off this list."""
    now = now or utcnow()
    rows = session.execute(
        select(Delivery.id, Delivery.next_attempt_at)
        .where(Delivery.status == QUEUED, Delivery.error_code == RATE_LIMITED,
               Delivery.next_attempt_at <= now + ahead,
               or_(Delivery.dispatched_at.is_(None), Delivery.dispatched_at < Delivery.next_attempt_at))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    booked = []
    for delivery_id, when in rows:
        assert when is not None  # the WHERE's next_attempt_at <= now + ahead holds only for a set time
        booked.append((delivery_id, when))
    return booked
