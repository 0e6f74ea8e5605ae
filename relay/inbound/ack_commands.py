"""issue 17: an acknowledgement by SMS (ACK 12, OK 12, ACK, or 1 — relay/rules/acknowledgement.py) and the
NO CALLS / CALLS OK preference. The member gets one confirmation per notice (the reply's dedupe key names
the notice and the member), however many times they acknowledge; nothing reaches a discussion."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.members import calls
from relay.model.tables import Member, Notice, utcnow
from relay.notices import acks


def apply_ack(session: Session, member: Member, argument: str | None, channel: str, event_id: int | None,
              plan) -> str:
    """Record the member's acknowledgement and plan its one confirmation; returns the outcome detail."""
    now = utcnow()
    if argument is None:
        open_ids = acks.open_requests(session, member.id, now)
        if not open_ids:
            plan.reply("ack_none")
            return "ack:none_open"
        if len(open_ids) > 1:
            plan.reply("ack_which", numbers=open_ids)
            return "ack:which"
        notice_id = open_ids[0]
    else:
        notice_id = int(argument)
    notice = session.get(Notice, notice_id)
    if notice is None or not acks.requests_ack(notice) or not acks.was_sent_to(session, notice, member.id):
        plan.reply("ack_unknown", number=notice_id)
        return "ack:unknown"
    if not acks.is_open(notice, now) and not acks.acknowledged(session, notice.id, member.id):
        plan.reply("ack_closed", number=notice_id)
        return "ack:closed"
    new = acks.record(session, notice.id, member.id, channel, event_id, now)
    plan.reply("ack_recorded", key=f"ack:{notice.id}:{member.id}", number=notice.id, title=notice.title)
    return f"ack:{notice.id}" if new else f"ack:{notice.id}:again"


def apply_calls(session: Session, member: Member, command: str, source: str, plan) -> str:
    """NO CALLS / CALLS OK: whether the escalation of an urgent notice may call the member."""
    calls.set_calls_ok(session, member, command == "calls_ok", source)
    plan.reply("calls_ok" if member.calls_ok else "no_calls")
    return command
