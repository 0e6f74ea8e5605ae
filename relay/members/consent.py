"""Opt-out and opt-in, recorded on the member and in the append-only consent log."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.infra import audit
from relay.infra.signing import read_unsubscribe_token
from relay.model.tables import ConsentEvent, Member, utcnow

_OPTED_OUT_AT = {"sms": "sms_opted_out_at", "email": "email_opted_out_at", "whatsapp": "whatsapp_opted_out_at"}


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


def opt_out_whatsapp(session: Session, member: Member, source: str) -> bool:
    """Stop all WhatsApp messages to the member (STOP on WhatsApp, a block at the provider)."""
    return _change(session, member, "whatsapp", True, source)


def opt_in_whatsapp(session: Session, member: Member, source: str, actor: audit.Actor | None = None) -> bool:
    """Record the member's WhatsApp opt-in (WhatsApp's rule: nothing is sent without one) and clear an
    opt-out. `source` says how, e.g. `whatsapp:message`, `web:preferences`, `import:<the CSV's words>`.
    False when the member was already opted in and not opted out."""
    if member.whatsapp_opted_in_at is not None and member.whatsapp_opted_out_at is None:
        return False
    now = utcnow()
    if member.whatsapp_opted_out_at is not None:
        _change(session, member, "whatsapp", False, source)
    else:
        session.add(ConsentEvent(member_id=member.id, channel="whatsapp", action="opt_in", source=source[:60]))
        origin = source.split(":", 1)[0]
        audit.record(session, "consent.opt_in", f"member:{member.id}", actor or audit.member_actor(member, origin),
                     channel="whatsapp", how=source)
    member.whatsapp_opted_in_at = member.whatsapp_opted_in_at or now
    return True


def take_whatsapp(session: Session, member: Member, source: str) -> int:
    """The member asks for WhatsApp themselves (their preference page): opted in and the channel chosen.
    Returns the number of changes (0: already so)."""
    changes = int(opt_in_whatsapp(session, member, source))
    if not member.whatsapp_discussion and member.whatsapp_number:
        member.whatsapp_discussion = True
        changes += 1
    return changes


def whatsapp_consent(session: Session, member_id: int, limit: int = 10) -> list[ConsentEvent]:
    """The member's WhatsApp consent log, newest first (how they opted in or out, and when)."""
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.member_id == member_id,
                                                           ConsentEvent.channel == "whatsapp")
                                .order_by(ConsentEvent.id.desc()).limit(limit)))


def unsubscribe_by_token(session: Session, secret: str, token: str, source: str) -> Member | None:
    """Apply a signed unsubscribe token (one-click link or mailto); None when the token is not ours."""
    found = read_unsubscribe_token(secret, token)
    if found is None:
        return None
    member = session.get(Member, found[0])
    if member is not None:
        opt_out_email(session, member, source)
    return member
