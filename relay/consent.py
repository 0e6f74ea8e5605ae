"""Opt-out and opt-in, recorded on the member and in the append-only consent log."""
from __future__ import annotations

from sqlalchemy.orm import Session

from .models import ConsentEvent, Member, utcnow


def opt_out_sms(session: Session, member: Member, source: str) -> bool:
    """Stop all SMS to the member; returns False when already opted out."""
    if member.sms_opted_out_at is not None:
        return False
    member.sms_opted_out_at = utcnow()
    session.add(ConsentEvent(member_id=member.id, channel="sms", action="opt_out", source=source))
    return True


def opt_in_sms(session: Session, member: Member, source: str) -> bool:
    if member.sms_opted_out_at is None:
        return False
    member.sms_opted_out_at = None
    session.add(ConsentEvent(member_id=member.id, channel="sms", action="opt_in", source=source))
    return True


def opt_out_email(session: Session, member: Member, source: str) -> bool:
    """Stop all email to the member; returns False when already opted out."""
    if member.email_opted_out_at is not None:
        return False
    member.email_opted_out_at = utcnow()
    session.add(ConsentEvent(member_id=member.id, channel="email", action="opt_out", source=source))
    return True


def opt_in_email(session: Session, member: Member, source: str) -> bool:
    if member.email_opted_out_at is None:
        return False
    member.email_opted_out_at = None
    session.add(ConsentEvent(member_id=member.id, channel="email", action="opt_in", source=source))
    return True


def unsubscribe_by_token(session: Session, secret: str, token: str, source: str) -> Member | None:
    """Apply a signed unsubscribe token (one-click link or mailto); None when the token is not ours."""
    from .tokens import read_unsubscribe_token

    found = read_unsubscribe_token(secret, token)
    if found is None:
        return None
    member = session.get(Member, found[0])
    if member is not None:
        opt_out_email(session, member, source)
    return member
