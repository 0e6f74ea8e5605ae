"""Processing a claimed batch of inbound SMS in one transaction (issue 18, item 4).

Per event, processing used to cost three transactions (its attempt counted, the processing, its
deliveries stamped as dispatched) and about 22 statements, a third of them the same lookups and the
deliveries' planning. A batch instead:

- counts the attempt of every event in it with one UPDATE, in a transaction of its own (as before: a
  crash still counts);
- locks and loads all its events with one SELECT ... FOR UPDATE, and with one SELECT each their
  senders' member rows, the cases their replies name with those cases' threads, and which senders have a
  held message; the inbound limits read the senders' recent events once (relay/inbound/limits.py Recent);
- processes the events one after the other, in id order, in ONE transaction, each exactly as
  relay/inbound/sms.py does alone (same rules, same outcome, same rows), except that the delivery rows
  they plan are written together (relay/outbound/fanout.py plan, one call) before the commit. Pending
  rows are written before any command is applied or WhatsApp message processed, so a command (MUTE,
  PAUSE, STOP...) acts on what was planned before it exactly as when events went one by one;
- commits, and only then queues the deliveries, as bulk tasks of 100 on the outbound queue
  (relay/outbound/bulk.py send_batch: the same claim and send-time checks as one by one, one claim and one
  record per 100 instead of a task and three transactions per delivery), the MMS pictures and the
  coordinator commands' after-work.

Idempotency is the transaction's: an event is marked processed in the same commit that writes its post
and its deliveries, so a crash before the commit leaves every event of the batch unprocessed and no row
written (the sweeper re-queues them), and a replay after it finds them processed. Any error rolls the
whole batch back and gives its attempts back; the drain then processes its events one by one, as before,
so one bad event still fails alone. An event that was attempted before (attempts > 0: it may be what
killed a worker) is never batched, so a poison event cannot take a batch's other events down with it."""
from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Sequence

from sqlalchemy import case, false, select, true, update
from sqlalchemy.orm import Session

from relay.discussion import holding, threads
from relay.discussion.posting import Posts
from relay.inbound.limits import Recent
from relay.infra.db import transaction
from relay.infra.dispatch import QUEUE_OUTBOUND, dispatch_safely
from relay.infra.storage import in_values
from relay.model.tables import Case, Delivery, HeldMessage, InboundEvent, Member, Post, Thread
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries_in_batches
from relay.providers import twilio_sms

log = logging.getLogger(__name__)

_CURRENT: contextvars.ContextVar["Batch | None"] = contextvars.ContextVar("relay_inbound_batch", default=None)


@dataclass
class Batch:
    """The open batch: its session, its locked events, its senders' members and what waits for the commit."""

    session: Session
    events: dict[int, InboundEvent]
    members: dict[str, Member]
    pending: list[dict] = field(default_factory=list)  # delivery rows planned, not yet written
    delivery_ids: list[int] = field(default_factory=list)  # answers to the senders, and WhatsApp's
    relay_ids: list[int] = field(default_factory=list)  # the relays of its posts, and their authors' answers
    images: list[int] = field(default_factory=list)
    after: list = field(default_factory=list)
    recent: Recent | None = None  # the senders' recent events, for the inbound limits (relay/inbound/limits.py)
    posts: Posts | None = None  # the batch's posts, written together (relay/discussion/posting.py)
    settings: object = None
    forms: dict[int, dict[str, str]] = field(default_factory=dict)  # the events' webhook fields, parsed once
    stale: bool = False  # a command may have changed followers or guard modes: read them again

    def holds(self, event_id: int) -> bool:
        return event_id in self.events

    def refresh(self) -> None:
        """Before an event: after a command, read the batch's followers and guard modes again (in one query
        each), so that what follows the command sees what it did."""
        if not self.stale:
            return
        self.stale = False
        self.session.info[holding.GUARD_MODES] = holding.modes_for(
            self.session, self.settings, self.session.info.get(threads.PRELOADED_THREADS, {}).keys())
        if self.posts is not None:
            self.posts.load(t.id for t in self.session.info.get(threads.PRELOADED_THREADS, {}).values())

    def member(self, phone: str) -> Member | None:
        """The member with this phone: loaded with the batch, or looked up (a member the batch did not know)."""
        found = self.members.get(phone)
        if found is None:
            found = self.session.scalar(select(Member).where(Member.phone == phone))
        return found

    def defer(self, rows: list[dict]) -> None:
        """Delivery rows to write with the batch's other rows, before the commit."""
        self.pending.extend(rows)

    def write_pending(self) -> None:
        """Write the posts and rows planned so far (before a command changes what later rows may be, and at
        the end); what was read for later events (followers, guard modes) is read again after it."""
        if self.posts is not None:
            self.posts.write()
        self.stale = True
        if not self.pending:
            return
        rows, seen = [], set()
        for row in self.pending:  # the first plan of a key wins, as when each event planned its own
            if row["dedupe_key"] not in seen:
                seen.add(row["dedupe_key"])
                rows.append(row)
        self.pending = []
        for purpose, ids in fanout.plan_by_purpose(self.session, rows).items():
            (self.relay_ids if purpose in HELD_PURPOSES else self.delivery_ids).extend(ids)


def current() -> Batch | None:
    """The batch open in this context, if any (relay/inbound/sms.py processes its events inside it)."""
    return _CURRENT.get()


# `processed_at IS NULL` as a CASE, which ix_inbound_unprocessed cannot serve, so a batch's events are found by
# primary key: during a burst that index holds the whole backlog, and a planner that took the unprocessed events
# for few (statistics from before the burst) read all of them for every batch (15 ms a batch at 59,000 stored,
# against ~1 ms; issue 18, docs/scale.md).
_UNPROCESSED_BY_KEY = case((InboundEvent.processed_at.is_(None), true()), else_=false())


def count_attempts(services, event_ids: Sequence[int], by: int = 1) -> None:
    """Count (by=1) or give back (by=-1) one attempt of each unprocessed event, in a transaction of its own."""
    with transaction(services.sessions) as session:
        session.execute(update(InboundEvent)
                        .where(in_values(session, InboundEvent.id, event_ids), _UNPROCESSED_BY_KEY)
                        .values(attempts=InboundEvent.attempts + by).execution_options(synchronize_session=False))


@contextmanager
def _open(session: Session, event_ids: Sequence[int], settings) -> Iterator[Batch]:
    """Lock and load the batch's events, and load in one query each what their processing would otherwise
    look up event by event: the senders' members, the cases their replies name and those cases' threads,
    which of the senders have a held message (relay/discussion/threads.py, relay/discussion/holding.py)."""
    events = {e.id: e for e in session.scalars(select(InboundEvent).where(in_values(session, InboundEvent.id, event_ids))
                                               .order_by(InboundEvent.id).with_for_update())}
    phones, numbers = set(), set()
    forms: dict[int, dict[str, str]] = {}
    for event in events.values():
        try:
            forms[event.id] = twilio_sms.parse_raw(event.raw)
            message = twilio_sms.parse_inbound(forms[event.id])
        except twilio_sms.BadWebhook:
            continue  # processing says "invalid"
        phones.add(message.sender)
        number, _text = threads.split_case_code(message.body)
        if number is not None:
            numbers.add(number)
    members = {m.phone or "": m for m in session.scalars(select(Member).where(in_values(session, Member.phone, sorted(phones))))} \
        if phones else {}
    cases = {c.number: c for c in session.scalars(select(Case).where(in_values(session, Case.number, sorted(numbers))))} \
        if numbers else {}
    case_threads = {t.case_id: t for t in session.scalars(
        select(Thread).where(in_values(session, Thread.case_id, sorted(c.id for c in cases.values()))))} if cases else {}
    member_ids = sorted(m.id for m in members.values())
    holding_members = set(session.scalars(select(HeldMessage.member_id).distinct().where(
        in_values(session, HeldMessage.member_id, member_ids), HeldMessage.status == "held"))) if member_ids else set()
    preloaded = {threads.PRELOADED_CASES: cases, threads.PRELOADED_THREADS: case_threads,
                 holding.MEMBERS_HOLDING: holding_members,
                 holding.GUARD_MODES: holding.modes_for(session, settings, sorted(case_threads))}
    session.info.update(preloaded)
    posts = Posts(session)
    posts.load(sorted(t.id for t in case_threads.values()))
    batch = Batch(session, events, members, recent=Recent(session, list(events.values())),
                  posts=posts, settings=settings, forms=forms)
    token = _CURRENT.set(batch)
    try:
        yield batch
    finally:
        _CURRENT.reset(token)
        for key in (*preloaded, holding.GUARD_MODES):
            session.info.pop(key, None)


@dataclass(frozen=True)
class BatchReport:
    processed: int
    deliveries: int


_HAND_OVER: contextvars.ContextVar["Callable[[list[int], list[int]], None] | None"] = contextvars.ContextVar(
    "relay_inbound_hand_over", default=None)


@contextmanager
def holding_relays(hand_over: Callable[[list[int], list[int]], None]) -> Iterator[None]:
    """Within this block, batches do not queue their committed deliveries: they hand them to
    `hand_over(relays, others)` (relay/inbound/drain.py queues the others soon, the relays once it has
    caught up; relays left unqueued are found again by held_relays)."""
    token = _HAND_OVER.set(hand_over)
    try:
        yield
    finally:
        _HAND_OVER.reset(token)


# What a post of the batch causes: its relays, and the answer to its author (held_relays finds both by the post).
HELD_PURPOSES = ("relay", "confirmation", "guard_warned")
_POST_ANSWERS = ("confirmation", "guard_warned")


def held_relays(services, since: datetime, until: datetime | None = None) -> list[int]:
    """The relays of replies posted in (since, until], and their authors' answers, that were committed but never
    queued (a drain held them while a backlog lasted). The posts first (their created_at index), then their
    deliveries by post id and by dedupe key (reply:<event>:<purpose>), 500 posts at a time: each lookup
    through an index of its own, whatever else is queued (a broadcast's rows). Only rows never queued
    (dispatched_at, which no index holds) come back: once per drain over the posts of HELD_WINDOW, the rows
    already queued were ~1,500 a statement in a sustained burst, all read into the worker (issue 18, item 4). The
    drain asks only for the posts made since its process last looked (relay/inbound/drain.py LOOK_OVERLAP)."""
    window = [Post.created_at > since, Post.inbound_event_id.is_not(None)]
    if until is not None:
        window.append(Post.created_at <= until)
    columns = (Delivery.id, Delivery.purpose, Delivery.status)
    never_queued = Delivery.dispatched_at.is_(None)
    rows = []
    with services.sessions() as session:
        posts = session.execute(select(Post.id, Post.inbound_event_id).where(*window)).all()
        for start in range(0, len(posts), 500):  # only the two unique/post indexes in the conditions
            chunk = posts[start:start + 500]
            rows += session.execute(select(*columns).where(
                in_values(session, Delivery.post_id, [p for p, _event in chunk]), never_queued)).all()
            keys = [f"reply:{event_id}:{purpose}" for _post, event_id in chunk for purpose in _POST_ANSWERS]
            rows += session.execute(select(*columns).where(in_values(session, Delivery.dedupe_key, keys),
                                                           never_queued)).all()
    return sorted({delivery_id for delivery_id, purpose, status in rows if purpose in HELD_PURPOSES and status == "queued"})


def process_batch(services, event_ids: Sequence[int], process: Callable[[int], object]) -> BatchReport:
    """Process these claimed SMS events (never attempted before) in one transaction; `process(event_id)`
    processes one of them (relay/inbound/drain.py process_event: it finds the open batch). Raises what
    any of them raised, after rolling the whole batch back and giving its attempts back.

    After the commit the deliveries are queued, or, inside holding_relays, handed over to be queued later."""
    ids = sorted(event_ids)
    count_attempts(services, ids)
    try:
        with transaction(services.sessions) as session, _open(session, ids, services.settings) as batch:
            for event_id in ids:
                process(event_id)
            batch.write_pending()
    except Exception as exc:
        try:
            count_attempts(services, ids, by=-1)  # the events go on one by one, counted there
        except Exception as again:
            log.warning("inbound batch %s..%s: could not give back its attempts (%s: %s); processing %s",
                        ids[0], ids[-1], type(again).__name__, again, type(exc).__name__)
        raise
    # committed: only now hand the work on (a lost hand-off is the sweeper's, as one by one)
    hand_over = _HAND_OVER.get()
    if hand_over is not None:
        hand_over(list(batch.relay_ids), list(batch.delivery_ids))
    else:
        dispatch_relays(services, sorted(batch.delivery_ids + batch.relay_ids))
    for image_id in batch.images:
        dispatch_safely(services.dispatcher.fetch_media, image_id)
    if batch.after:
        from relay.inbound import coordinator_commands

        for after in batch.after:
            coordinator_commands.run_after(services, after)
    return BatchReport(len(ids), len(batch.delivery_ids) + len(batch.relay_ids))


def dispatch_relays(services, delivery_ids: Sequence[int]) -> None:
    """Queue the deliveries of processed batches (committed): bulk tasks on the outbound queue."""
    dispatch_deliveries_in_batches(services, delivery_ids, QUEUE_OUTBOUND)
