"""issue 17: a member's "no calls" preference (NO CALLS / CALLS OK by SMS, or the preference page): whether the
escalation of an urgent notice may call them (relay/notices/escalation.py). Each change is audited."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.infra import audit
from relay.model.tables import Member


def set_calls_ok(session: Session, member: Member, ok: bool, source: str, channel: str = "sms") -> bool:
    """Allow or refuse escalation calls; True when it changed."""
    if member.calls_ok == ok:
        return False
    member.calls_ok = ok
    audit.record(session, "member.calls", f"member:{member.id}", audit.member_actor(member, channel),
                 calls_ok=ok, source=source)
    return True
