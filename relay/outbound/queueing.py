"""Handing deliveries to the work queue, after commit: one by one, in bulk batches, or each with a
countdown to its booked slot. Dispatching is noted on the rows (dispatched_at) so the sweeper knows
what is in flight and re-queues what a broker outage lost (relay/sweeper.py)."""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import update

from relay.infra.db import transaction
from relay.infra.dispatch import QUEUE_OUTBOUND, dispatch_safely
from relay.infra.storage import in_values
from relay.model.tables import Delivery, utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 250  # deliveries per bulk task unless RELAY_BULK_BATCH_SIZE says otherwise (batch_size)
# A deferred delivery due within this long is queued at once with a countdown; one due later is left to
# the sweeper, which queues it this long ahead of its slot (longer than the sweep interval, 30 s).
# Broker countdowns of hours would sit in worker memory and be redelivered after the visibility timeout.
DISPATCH_AHEAD = timedelta(seconds=120)
# More deliveries than this at once (a reply to a case a broadcast made 7,400 follow, a resumed hold, the silent
# members of an escalation) go in bulk tasks of batch_size, not one Celery task each: 30 tasks, not 7,400.
ONE_TASK_EACH_UP_TO = 20


def batch_size(services) -> int:
    """Deliveries per bulk task: RELAY_BULK_BATCH_SIZE (250). Few tasks per broadcast, still several in
    flight; each task's fixed cost (its Celery message, the claim, the load, the checks' queries, the
    record) is shared by more messages: 250 instead of 100 took ~20 % off a worker's CPU per message in
    the database part of a batch (docs/scale.md)."""
    return getattr(services.settings, "bulk_batch_size", None) or BATCH_SIZE


def dispatch_deliveries(services, delivery_ids: Sequence[int], countdown: float | None = None) -> None:
    """Queue deliveries (after commit) and note when, so the sweeper knows what is in flight. Up to
    ONE_TASK_EACH_UP_TO, one task each (they spread over the worker processes); more, and they go in bulk tasks
    on the outbound queue (dispatch_deliveries_in_batches)."""
    if not delivery_ids:
        return
    if len(delivery_ids) > ONE_TASK_EACH_UP_TO and countdown is None \
            and hasattr(services.dispatcher, "deliver_batches"):
        dispatch_deliveries_in_batches(services, delivery_ids, QUEUE_OUTBOUND)
        return
    if dispatch_safely(services.dispatcher.deliver, list(delivery_ids), countdown=countdown):
        _note_dispatched(services, delivery_ids, utcnow() + timedelta(seconds=countdown or 0))


def _note_dispatched(services, delivery_ids: Sequence[int], when) -> None:
    """Stamp dispatched_at on queued deliveries (500 ids a statement: SQLite's IN list stays short)."""
    with transaction(services.sessions) as session:
        for start in range(0, len(delivery_ids), 500):
            session.execute(update(Delivery).where(in_values(session, Delivery.id, delivery_ids[start:start + 500]))
                            .values(dispatched_at=when).execution_options(synchronize_session=False))


def dispatch_deliveries_in_batches(services, delivery_ids: Sequence[int], queue: str) -> None:
    """dispatch_deliveries for many deliveries at once (the relays of a drained batch of replies): bulk
    tasks of batch_size (relay/outbound/bulk.py send_batch: the same claim and checks as one by one) on
    `queue`, instead of one task per delivery; noted as dispatched like dispatch_deliveries. A dispatcher
    without batches gets them one by one; a broker outage is left to the sweeper."""
    if not delivery_ids:
        return
    dispatcher = services.dispatcher
    if not hasattr(dispatcher, "deliver_batches"):
        dispatch_deliveries(services, delivery_ids)
        return
    ids, size = sorted(delivery_ids), batch_size(services)
    chunks = [ids[start:start + size] for start in range(0, len(ids), size)]
    if dispatch_safely(dispatcher.deliver_batches, chunks, queue=queue):
        _note_dispatched(services, ids, utcnow())


def dispatch_batches(services, batches: Iterable[Sequence[int]]) -> int:
    """Queue batches of deliveries (each one bulk task, relay/outbound/bulk.py) after commit; returns how
    many were queued. A dispatcher without batches gets the ids one by one. A broker outage is left to
    the sweeper, which re-queues what is still waiting."""
    dispatcher = services.dispatcher
    count = 0
    try:
        if hasattr(dispatcher, "deliver_batches"):
            count = dispatcher.deliver_batches(batches)
        else:
            for ids in batches:
                dispatcher.deliver(list(ids))
                count += 1
    except Exception as exc:  # broker down, network error: logged, recovered by the sweeper
        log.warning("dispatch of delivery batches failed after %s, the sweeper will retry: %s: %s", count,
                    type(exc).__name__, exc)
    return count


def dispatch_when_due(services, due: Iterable[tuple[int, datetime]]) -> None:
    """Queue deliveries each with a countdown to its own time (rounded up to the second, so none
    arrives before it may be claimed): the deferred deliveries whose booked slots come soon."""
    now = utcnow()
    by_countdown: dict[int, list[int]] = {}
    for delivery_id, when in due:
        by_countdown.setdefault(max(0, math.ceil((when - now).total_seconds())), []).append(delivery_id)
    for countdown, ids in sorted(by_countdown.items()):
        dispatch_deliveries(services, ids, countdown=countdown or None)
