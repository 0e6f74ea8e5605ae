"""Opt-out and opt-in, recorded on the member and in the append-only consent log."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.infra import audit
from relay.infra.signing import read_unsubscribe_token
from relay.model.tables import ConsentEvent, Member, utcnow

_OPTED_OUT_AT = {"sms": "sms_opted_out_at", "email": "email_opted_out_at"}


def _change(session: Session, member: Member, channel: str, opt_out: bool, source: str) -> bool:
    """Record an opt-out (or opt-in) on one channel; False when it was already so."""
    column = _OPTED_OUT_AT[channel]
    if (getattr(member, column) is not None) == opt_out:
        return False
    setattr(member, column, utcnow() if opt_out else None)
    session.add(ConsentEvent(member_id=member.id, channel=channel, action="opt_out" if opt_out else "opt_in",
                             source=source))
    origin = source.split(":", 1)[0]
    actor = audit.Actor(source, origin) if origin == "provider" else audit.member_actor(member, origin)
    audit.record(session, f"consent.{'opt_out' if opt_out else 'opt_in'}", f"member:{member.id}", actor,
                 channel=channel, how=source)
    return True


def log_event(session: Session, member_id: int, channel: str, action: str, source: str) -> None:
    """One line of the consent log: a ladder step (relay/members/ladder.py) or a digest unsubscribe."""
    session.add(ConsentEvent(member_id=member_id, channel=channel, action=action[:20], source=source[:60]))


def opt_out_sms(session: Session, member: Member, source: str) -> bool:
    """Stop all SMS to the member; returns False when already opted out."""
    return _change(session, member, "sms", True, source)


def opt_in_sms(session: Session, member: Member, source: str) -> bool:
    return _change(session, member, "sms", False, source)


def opt_out_email(session: Session, member: Member, source: str) -> bool:
    """Stop all email to the member; returns False when already opted out."""
    return _change(session, member, "email", True, source)


def opt_in_email(session: Session, member: Member, source: str) -> bool:
    return _change(session, member, "email", False, source)


def unsubscribe_by_token(session: Session, secret: str, token: str, source: str) -> Member | None:
    """Apply a signed unsubscribe token (one-click link or mailto); None when the token is not ours."""
    found = read_unsubscribe_token(secret, token)
    if found is None:
        return None
    member = session.get(Member, found[0])
    if member is not None:
        opt_out_email(session, member, source)
    return member
