"""Processing stored webhooks in batches: the worker side of the cheap hand-off at the edge.

A webhook is stored (one autocommit INSERT) and acknowledged; the web process then only rings a
doorbell (relay/infra/doorbell.py), and one queued drain task processes everything waiting. Under load
thousands of webhooks cost a handful of tasks instead of one broker message each.

Claiming stamps `dispatched_at` with an UPDATE over `FOR UPDATE SKIP LOCKED` rows, so drainers
running side by side split the waiting events between them, and a drainer that dies leaves its
claimed events to the sweeper (it re-queues events claimed over five minutes ago and still not
processed). Processing is idempotent (relay/inbound/sms.py, relay/inbound/statuses.py): a row claimed
twice is processed once.

Consecutive SMS events of a claim that were never attempted before are processed together, in one
transaction (relay/inbound/batch.py: one commit and one dispatch per batch instead of three
transactions per event); if the batch fails it is rolled back and its events are processed one by one,
as are status callbacks, emails and events attempted before.

While a backlog lasts (claims come back full) the deliveries a batch's posts cause (relays and the answers to
their authors) are committed but not queued: the sends would take the worker's processes from the drain, four
sends per reply. They are queued when a drain catches up, by a drain stopped at its budget once held longer
than HOLD_AT_MOST, or by the sweeper (never queued a minute after being planned); see docs/scale.md."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, update

from relay.inbound.batch import dispatch_relays, held_relays, holding_relays, process_batch
from relay.inbound.sms import process_inbound
from relay.inbound.statuses import apply_status
from relay.infra.db import is_transient, transaction
from relay.infra.statistics import refresh_statistics
from relay.model.tables import InboundEvent, utcnow

log = logging.getLogger(__name__)

# Events claimed at once, processed as one batch (relay/inbound/batch.py). 200 rather than 50: a batch's fixed
# statements are shared by more events (issue 18: CPU per reply 0.87 -> 0.73 ms with the IN lists as they were).
# A batch that fails is rolled back and its events processed one by one, so this also bounds that redo.
BATCH = 200
BUDGET = 1000  # events one drain task processes before it hands over to a fresh task (a multiple of BATCH)
# While a backlog lasts, the relays of the posts a drain makes wait to be queued until it catches up (the
# authors' answers are queued at once), so the sends do not take the worker from the drain: at most this long.
HOLD_AT_MOST = timedelta(seconds=10)
# Relays held are looked for among the posts of this last while; older ones are the sweeper's (a delivery
# never queued is queued by it a minute after it was planned: relay/sweeper.py).
HELD_WINDOW = timedelta(seconds=30)
# Each look reads only the posts made since this process's last look, less this overlap: a post is committed
# after its created_at, with its batch (200 replies, well under a second here); one a look still misses is the
# sweeper's, a minute after it was planned. Reading the whole HELD_WINDOW at the end of every drain task (1,000
# events) read ~20,000 posts and their deliveries in a sustained burst: ~18 % of the drain's time, and with a
# 5 s overlap ~10 % (issue 18, item 4; in one process, 48,000 replies stored and drained).
LOOK_OVERLAP = timedelta(seconds=2)
_LOOKED_UNTIL: dict[str, datetime] = {}  # per database: where this process's last look for held relays ended


@dataclass(frozen=True)
class DrainReport:
    processed: int
    failed: int
    more: bool  # stopped at the budget with events possibly still waiting


def claim_waiting(services, limit: int = BATCH) -> list[tuple[int, str]]:
    """Claim up to `limit` stored events nobody has queued yet, oldest first: [(id, kind)]."""
    return [(event_id, kind) for event_id, kind, _attempts in _claim(services, limit)]


def _claim(services, limit: int) -> list[tuple[int, str, int]]:
    """claim_waiting, with each event's attempts so far: [(id, kind, attempts)].

    The rows are picked in a materialized CTE, evaluated exactly once. As `id IN (SELECT ... LIMIT n FOR UPDATE
    SKIP LOCKED)` PostgreSQL may rescan the subquery (a nested-loop plan, chosen by the statistics of the moment);
    a rescan skips the rows this statement has just updated and takes the next ones, so a claim of n came back
    with more than n (seen: 5 for a claim of 3, which broke the drain's budget and its full-claim signal)."""
    waiting = (select(InboundEvent.id)
               .where(InboundEvent.processed_at.is_(None), InboundEvent.dispatched_at.is_(None))
               .order_by(InboundEvent.id).limit(limit).with_for_update(skip_locked=True)
               .cte("waiting").prefix_with("MATERIALIZED", dialect="postgresql"))
    with transaction(services.sessions) as session:
        rows = session.execute(update(InboundEvent).where(InboundEvent.id.in_(select(waiting.c.id)))
                               .values(dispatched_at=utcnow())
                               .returning(InboundEvent.id, InboundEvent.kind, InboundEvent.attempts)
                               .execution_options(synchronize_session=False)).all()
    return sorted((row.id, row.kind, row.attempts) for row in rows)


def _groups(claimed: list[tuple[int, str, int]]) -> list[list[tuple[int, str]]]:
    """The claim in id order, split into runs of SMS events never attempted before (each run one batch)
    and, alone, every other event (status callbacks, emails, and events attempted before, which may be
    what stopped an earlier drain)."""
    groups: list[list[tuple[int, str]]] = []
    run: list[tuple[int, str]] = []
    for event_id, kind, attempts in claimed:
        if kind == "sms" and attempts == 0:
            run.append((event_id, kind))
            continue
        if run:
            groups.append(run)
            run = []
        groups.append([(event_id, kind)])
    if run:
        groups.append(run)
    return groups


def process_event(services, event_id: int, kind: str):
    """Process one stored event with the function its kind needs."""
    if kind == "status":
        return apply_status(services, event_id)
    return process_inbound(services, event_id)


def drain(services, budget: int = BUDGET, on_backlog: Callable[[], None] | None = None, linger: float = 0.0,
          sleep: Callable[[float], None] = time.sleep) -> DrainReport:
    """Process waiting events in claimed batches until none are left or the budget is spent.

    `on_backlog` is called once if a claim comes back full (more are waiting than one batch): the
    task uses it to start one more drainer beside this one. With `linger`, a claim that finds
    nothing is tried once more after that long, for events whose web process skipped its ring
    (relay/infra/doorbell.py). A database error stops the drain and is raised (the task retries; the
    claimed events go back to the sweeper); any other error is logged and the event left to the
    sweeper, which counts attempts and sets a poison event aside."""
    answers: list[int] = []  # the batches' answers to their senders (other than their posts'), not queued yet
    held: list[tuple[datetime, list[int]]] = []  # this drain's posts' relays and answers, by when they were handed

    def hand_over(relays: list[int], others: list[int]) -> None:
        answers.extend(others)
        held.append((utcnow(), relays))

    def queue(caught_up: bool, others_too: bool = False) -> None:
        """The answers and this drain's held relays: all of them once caught up, else those held too long; with
        `others_too`, those another drain left held (one query; a drain stopped at its budget leaves them)."""
        now = utcnow()
        until = None if caught_up else now - HOLD_AT_MOST
        ids = set(answers)
        for handed, relays in list(held):
            if until is None or handed <= until:
                ids.update(relays)
                held.remove((handed, relays))
        if others_too:
            key = services.settings.database_url
            looked = _LOOKED_UNTIL.get(key)
            since = now - HELD_WINDOW if looked is None else max(now - HELD_WINDOW, looked - LOOK_OVERLAP)
            ids.update(held_relays(services, since, until))
            reached = until or now
            _LOOKED_UNTIL[key] = reached if looked is None else max(looked, reached)
        dispatch_relays(services, sorted(ids))
        answers.clear()

    try:
        with holding_relays(hand_over):
            report = _drain(services, budget, on_backlog, linger, sleep, lambda: queue(caught_up=True))
    except BaseException:
        try:  # a database error stopped the drain: the answers committed are still queued (else the sweeper's)
            dispatch_relays(services, answers)
        except Exception as exc:
            log.warning("drain: could not queue %s answers (%s: %s); the sweeper will", len(answers),
                        type(exc).__name__, exc)
        raise
    # Once per drain: relays a drain stopped at its budget left held (its continuation, or the next drain, finds
    # them), and at a budget stop, those held too long (one query over the posts made since this process last
    # looked, within the last HELD_WINDOW).
    queue(caught_up=not report.more, others_too=True)
    return report


def _drain(services, budget: int, on_backlog, linger: float, sleep, caught_up: Callable[[], None]) -> DrainReport:
    processed = failed = 0
    asked_for_help = False
    while processed + failed < budget:
        limit = min(BATCH, budget - processed - failed)
        claimed = _claim(services, limit)
        if not claimed and linger > 0:
            sleep(linger)
            claimed = _claim(services, limit)
        if not claimed:
            return DrainReport(processed, failed, more=False)
        if len(claimed) == BATCH and on_backlog is not None and not asked_for_help:
            asked_for_help = True
            on_backlog()
        for group in _groups(claimed):
            if len(group) > 1 and _batch(services, group):
                processed += len(group)
                continue
            for event_id, kind in group:  # alone, or a batch that failed: one by one
                try:
                    process_event(services, event_id, kind)
                    processed += 1
                except Exception as exc:
                    if is_transient(exc):  # the database is unreachable: stop, retry later (no attempt used)
                        raise
                    failed += 1  # one bad event must not hold up the others
                    log.exception("inbound %s (%s): processing failed; the sweeper will retry it", event_id, kind)
        # a burst can grow posts and deliveries many times over before autovacuum looks (relay/infra/statistics.py)
        refresh_statistics(services.engine)
        if len(claimed) < limit:  # caught up: the relays go now (while a backlog lasts, the drain goes first)
            caught_up()
    return DrainReport(processed, failed, more=True)


def _batch(services, group: list[tuple[int, str]]) -> bool:
    """Process a run of SMS events as one batch (relay/inbound/batch.py); False if it failed and was
    rolled back (its events are then processed one by one). A database outage is raised, as one by one.
    The deliveries it planned are handed over to the drain (holding_relays), queued when it catches up."""
    try:
        process_batch(services, [event_id for event_id, _kind in group],
                      lambda event_id: process_event(services, event_id, "sms"))
        return True
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("inbound %s..%s: the batch failed (%s: %s); processing its events one by one",
                    group[0][0], group[-1][0], type(exc).__name__, exc)
        return False
