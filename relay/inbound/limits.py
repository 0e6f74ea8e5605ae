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

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
