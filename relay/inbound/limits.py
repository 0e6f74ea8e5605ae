"""Limits on inbound SMS and email that protect the members from one runaway sender.

Counted in the database (the inbound_events every worker shares), so the limit holds whichever
worker processes a message and in whatever order: a message is over the limit when its sender had
RELAY_INBOUND_PER_MINUTE messages or more in the minute before it was received. Over the limit,
the message is kept (the event and its outcome "throttled") but not relayed, and the sender is told
once an hour. STOP, START and HELP are never throttled (the check applies to posts only).

A member's auto-responder answering every relay with the same text would, with a second one, make
a loop through the relay; a post identical to the same member's previous post within
REPEAT_WINDOW is kept as "repeat" and not relayed, which stops such a loop after one message.

Email (issue 13) is counted the same way by its From address, across the email providers; over the
limit it is kept as "throttled" and nobody is answered (the From line may be forged)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from relay.infra.storage import in_values
from relay.model.tables import InboundEvent, Post
from relay.providers import twilio_sms

WINDOW = timedelta(minutes=1)
REPEAT_WINDOW = timedelta(minutes=10)


def over_rate(session: Session, settings, event: InboundEvent) -> bool:
    """Whether the sender sent `inbound_per_minute` messages or more in the minute before this one."""
    same_source = [InboundEvent.kind == event.kind] + ([] if event.kind == "email" else
                                                       [InboundEvent.provider == event.provider])
    earlier = session.scalar(select(func.count()).select_from(InboundEvent).where(
        *same_source, InboundEvent.sender == event.sender, InboundEvent.id < event.id,
        InboundEvent.received_at > event.received_at - WINDOW, InboundEvent.received_at <= event.received_at))
    return (earlier or 0) >= settings.inbound_per_minute


def throttle_notice_key(sender: str, event: InboundEvent) -> str:
    """The dedupe key of the "you are throttled" answer: one per sender per hour."""
    return f"throttled:{sender}:{event.received_at:%Y-%m-%dT%H}"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def repeats_last_post(session: Session, event: InboundEvent, body: str) -> bool:
    """Whether the sender's previous posted message (within REPEAT_WINDOW) had the same text."""
    previous = session.scalar(select(InboundEvent).where(
        InboundEvent.provider == event.provider, InboundEvent.kind == event.kind,
        InboundEvent.sender == event.sender, InboundEvent.id != event.id, InboundEvent.outcome == "posted",
        InboundEvent.received_at > event.received_at - REPEAT_WINDOW).order_by(InboundEvent.id.desc()).limit(1))
    if previous is None:
        return False
    try:
        earlier = twilio_sms.parse_inbound(twilio_sms.parse_raw(previous.raw)).body
    except twilio_sms.BadWebhook:
        return False
    return _norm(earlier) == _norm(body)


def repeats_last_email_post(session: Session, event: InboundEvent, text: str) -> bool:
    """Whether the sender's previous email post (within REPEAT_WINDOW) had the same text."""
    earlier = session.scalar(select(Post.body).join(InboundEvent, Post.inbound_event_id == InboundEvent.id).where(
        InboundEvent.kind == "email", InboundEvent.sender == event.sender, InboundEvent.id != event.id,
        InboundEvent.received_at > event.received_at - REPEAT_WINDOW).order_by(InboundEvent.id.desc()).limit(1))
    return earlier is not None and _norm(earlier) == _norm(text)


class Recent:
    """over_rate and repeats_last_post for a batch of SMS events (relay/inbound/batch.py), from ONE query of
    the recent events of the batch's senders instead of two queries per event. The answers are the same as
    the per-event functions': the counts do not depend on processing, and the posts are brought up to date
    as the batch posts (`posted`), so a sender's second message in the batch sees its first."""

    def __init__(self, session: Session, events: list[InboundEvent]):
        # (provider, kind, sender) -> [(id, received_at, outcome, raw if known)]
        self._by_sender: dict[tuple[str, str, str], list[tuple[int, datetime, str, str]]] = {}
        sms = [e for e in events if e.kind != "email"]
        if not sms:
            return
        earliest = min(e.received_at for e in sms) - max(WINDOW, REPEAT_WINDOW)
        senders = sorted({e.sender for e in sms})
        kinds = {(e.provider, e.kind) for e in sms}
        # Only the sender and the time in the conditions, the two columns of ix_inbound_sender_time (migration
        # 0022); provider and kind are sorted out here. With them in the query, a planner without fresh
        # statistics (a busy hour's new rows, before autovacuum's ANALYZE) read the batch's recent events
        # through the (provider, kind, dedupe_key) index, i.e. every SMS event stored: ~150 ms a batch with
        # 30,000 in the table, against ~2 ms (issue 18, item 4; tests/unit/inbound/test_limit_queries.py).
        # The body of each sender's latest post comes along (the repeat check reads the sender's last post); the
        # others' stay in the database: in a burst a sender has many posts within REPEAT_WINDOW, and shipping
        # every one of their bodies with each batch cost more as the burst went on (issue 18, item 4; a post
        # that is not the latest is read by repeats_last_post, should it be the one it compares with).
        sender = (InboundEvent.provider, InboundEvent.kind, InboundEvent.sender)
        latest_post = func.max(case((InboundEvent.outcome == "posted", InboundEvent.id))).over(partition_by=sender)
        raw = case((and_(InboundEvent.outcome == "posted", InboundEvent.id == latest_post), InboundEvent.raw),
                   else_=literal(""))
        rows = session.execute(select(InboundEvent.id, InboundEvent.provider, InboundEvent.kind, InboundEvent.sender,
                                      InboundEvent.received_at, InboundEvent.outcome, raw.label("raw")).where(
            in_values(session, InboundEvent.sender, senders), InboundEvent.received_at > earliest)).all()
        for row in rows:
            if (row.provider, row.kind) in kinds:
                self._by_sender.setdefault((row.provider, row.kind, row.sender), []).append(
                    (row.id, row.received_at, row.outcome, row.raw or ""))

    def _recent(self, event: InboundEvent):
        return self._by_sender.get((event.provider, event.kind, event.sender), [])

    def over_rate(self, settings, event: InboundEvent) -> bool:
        """over_rate(), from the batch's query."""
        start = event.received_at - WINDOW
        earlier = sum(1 for event_id, received_at, _outcome, _raw in self._recent(event)
                      if event_id < event.id and start < received_at <= event.received_at)
        return earlier >= settings.inbound_per_minute

    def repeats_last_post(self, session: Session, event: InboundEvent, body: str) -> bool:
        """repeats_last_post(), from the batch's query (the previous post's text is read only when there is one)."""
        start = event.received_at - REPEAT_WINDOW
        posted = [(event_id, raw) for event_id, received_at, outcome, raw in self._recent(event)
                  if outcome == "posted" and event_id != event.id and received_at > start]
        if not posted:
            return False
        event_id, raw = max(posted)
        if not raw:
            raw = session.scalar(select(InboundEvent.raw).where(InboundEvent.id == event_id)) or ""
        try:
            earlier = twilio_sms.parse_inbound(twilio_sms.parse_raw(raw)).body
        except twilio_sms.BadWebhook:
            return False
        return _norm(earlier) == _norm(body)

    def processed(self, event: InboundEvent, outcome: str) -> None:
        """An event of the batch got its outcome (a post: later messages of its sender compare with it)."""
        recent = self._by_sender.setdefault((event.provider, event.kind, event.sender), [])
        recent[:] = [r for r in recent if r[0] != event.id]
        recent.append((event.id, event.received_at, outcome, event.raw if outcome == "posted" else ""))
