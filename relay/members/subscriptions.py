"""Digest subscriptions: members who switch a channel to digest, and anyone who subscribes on the
web form with double opt-in (a confirmation email with a signed link; the time, address and form
kept as consent evidence). Unsubscribing (RFC 8058 one-click, the mailto, or the page) is immediate
and confirmed by exactly one email: its delivery is keyed by the change that caused it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.infra.signing import read_unsubscribe_token
from relay.infra.storage import insert_if_new
from relay.members import consent
from relay.members.emails import is_email_address
from relay.model.tables import DigestSubscription, Member, utcnow
from relay.model.translatable import N_, Translatable

FREQUENCIES = ("daily", "weekly")


class SubscriptionError(Translatable, ValueError):
    """A subscription that cannot be made as asked; the message says why."""


def valid_zone(name: str) -> str:
    name = (name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriptionError(N_("unknown time zone %(zone)s (expected an IANA name like Asia/Seoul)"), zone=repr(name)) from None
    if not name or name.startswith(("/", ".")):
        raise SubscriptionError(N_("unknown time zone %(zone)s"), zone=repr(name))
    return name


def valid_hour(value) -> int:
    text = str(value if value is not None else "").strip()
    if ":" in text:
        text = text.split(":", 1)[0]
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 23:
        raise SubscriptionError(N_("the delivery hour must be 0 to 23, got %(value)s"), value=repr(value))
    return int(text)


def valid_frequency(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in FREQUENCIES:
        raise SubscriptionError(N_("frequency must be daily or weekly, got %(value)s"), value=repr(value))
    return value


def valid_email(value: str) -> str:
    value = (value or "").strip()
    if not is_email_address(value):
        raise SubscriptionError(N_("%(value)s is not an email address"), value=repr(value))
    return value.lower()


def _get(session: Session, channel: str, address: str) -> DigestSubscription | None:
    return session.scalar(select(DigestSubscription).where(DigestSubscription.channel == channel,
                                                           DigestSubscription.address == address))


def _inserted(session: Session, channel: str, address: str) -> DigestSubscription:
    """The row insert_if_new just made sure of (it exists in this transaction)."""
    sub = _get(session, channel, address)
    if sub is None:
        raise RuntimeError(f"digest subscription {channel}:{address} missing after insert")
    return sub


def ensure_member_subscription(session: Session, member: Member, channel: str) -> DigestSubscription | None:
    """A member who switched `channel` to digest gets an active daily subscription at 07:00 in their
    own zone (no double opt-in: they are a member already). None when they have no address there."""
    address = member.phone if channel == "sms" else (member.email or "").lower()
    if not address:
        return None
    now = utcnow()
    insert_if_new(session, DigestSubscription.__table__, {
        "member_id": member.id, "channel": channel, "address": address, "timezone": member.timezone or "UTC",
        "frequency": "daily", "hour": 7, "status": "active", "consent_ip": "", "consent_form": "",
        "created_at": now, "confirmed_at": now, "unsubscribed_at": None})
    sub = _inserted(session, channel, address)
    if sub.status != "active":
        sub.status, sub.confirmed_at, sub.unsubscribed_at = "active", now, None
    sub.member_id = member.id
    return sub


@dataclass(frozen=True)
class Unsubscribed:
    found: bool  # the token was ours
    rows: list  # the one confirmation email to plan (none when nothing changed)


def unsubscribe(session: Session, settings, token: str, source: str) -> Unsubscribed:
    """Apply a signed unsubscribe token: scope "email" stops a member's list mail (relay/members/consent.py),
    scope "digest" ends a digest subscription. Immediate; one confirmation email per change."""
    found = read_unsubscribe_token(settings.secret(), token)
    if found is None:
        return Unsubscribed(False, [])
    ident, scope = found
    if scope == "digest":
        sub = session.get(DigestSubscription, ident, with_for_update=True)
        if sub is None:
            return Unsubscribed(False, [])
        if sub.status == "unsubscribed":
            return Unsubscribed(True, [])
        unsubscribed_at = utcnow()
        sub.status, sub.unsubscribed_at = "unsubscribed", unsubscribed_at
        if sub.member_id is not None:
            # Logged; the member's channel stays in digest mode (no more per-message mail than before:
            # unsubscribing never means more mail). The preference page shows it and can change it.
            consent.log_event(session, sub.member_id, sub.channel, "digest_off", source)
        if sub.channel != "email":
            return Unsubscribed(True, [])
        key = f"unsubscribed:digest:{sub.id}:{unsubscribed_at.timestamp():.0f}"
        return Unsubscribed(True, [_confirmation_row(key, sub.member_id, sub.address, "unsubscribed_digest")])
    member = session.get(Member, ident)
    if member is None:
        return Unsubscribed(False, [])
    if not consent.opt_out_email(session, member, source) or not member.email:
        return Unsubscribed(True, [])
    opted_out_at = member.email_opted_out_at or utcnow()  # set by opt_out_email just now
    key = f"unsubscribed:email:{member.id}:{opted_out_at.timestamp():.0f}"
    return Unsubscribed(True, [_confirmation_row(key, member.id, member.email, "unsubscribed")])


def _confirmation_row(key: str, member_id: int | None, address: str, purpose: str) -> dict:
    return {"dedupe_key": key, "purpose": purpose, "channel": "email", "member_id": member_id,
            "to_address": address, "body": ""}


def subscribe(session: Session, *, email: str, timezone: str, frequency: str, hour, ip: str,
              form: dict) -> tuple[DigestSubscription, dict | None]:
    """Record a web-form subscription as pending, with its consent evidence, and the confirmation
    email row to plan (None when it is already active: nothing to confirm)."""
    address = valid_email(email)
    values = dict(timezone=valid_zone(timezone), frequency=valid_frequency(frequency), hour=valid_hour(hour))
    now = utcnow()
    member_id = session.scalar(select(Member.id).where(Member.email == address))
    insert_if_new(session, DigestSubscription.__table__, {
        "member_id": member_id, "channel": "email", "address": address, "status": "pending", "consent_ip": "",
        "consent_form": "", "created_at": now, "confirmed_at": None, "unsubscribed_at": None, **values})
    sub = _inserted(session, "email", address)
    for key, value in values.items():
        setattr(sub, key, value)
    if sub.status == "active":
        return sub, None
    sub.status = "pending"
    sub.consent_ip = (ip or "")[:64]
    sub.consent_form = json.dumps({"at": now.isoformat(), "ip": ip, "form": form}, sort_keys=True)
    # At most one confirmation per address per hour: the form is open, and must not become a way to
    # flood someone's mailbox.
    key = f"subscribe:{sub.id}:{now:%Y%m%d%H}"
    return sub, _confirmation_row(key, member_id, address, "confirm_subscription")


def confirm(session: Session, subscription_id: int) -> DigestSubscription | None:
    """The double opt-in's second step (a POST from the emailed link's page)."""
    sub = session.get(DigestSubscription, subscription_id, with_for_update=True)
    if sub is None:
        return None
    if sub.status != "active":
        sub.status, sub.confirmed_at, sub.unsubscribed_at = "active", utcnow(), None
    return sub
