"""Planning deliveries set-wise: who gets a post or a reply, written as delivery rows in batches,
each row unique by its dedupe key so planning twice creates nothing new."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import ladder
from .models import Delivery, Member, Participant, utcnow
from .storage import insert_ignoring_conflicts


def delivery_ids_for(session: Session, keys: list[str]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(keys), 500):
        ids.extend(session.scalars(select(Delivery.id).where(Delivery.dedupe_key.in_(keys[start:start + 500]))))
    return sorted(ids)


def plan(session: Session, rows: list[dict]) -> list[int]:
    """Insert delivery rows (skipping those that exist) and return the ids of all of them."""
    now = utcnow()
    rows = ladder.shape_rows(session, rows, now)  # issue 5: mutes, pauses, digest/urgent-only, quiet hours
    if not rows:
        return []
    for row in rows:  # every row needs the same keys for one executemany
        for optional in ("post_id", "case_id", "member_id"):
            row.setdefault(optional, None)
        row.setdefault("status", "queued")
        row.setdefault("channel", "sms")
        row.setdefault("attempts", 0)
        row.setdefault("created_at", now)
        row.setdefault("updated_at", now)
    insert_ignoring_conflicts(session, Delivery.__table__, rows)
    return delivery_ids_for(session, [r["dedupe_key"] for r in rows])


def reachable_members(session: Session, member_filter, exclude_member_id: int | None = None):
    """Active members matching `member_filter` with the channels they take now (chosen, an address,
    not opted out, email not suspended after bounces)."""
    query = (
        select(Member.id, Member.phone, Member.email, Member.language,
               (Member.phone.is_not(None) & Member.sms_discussion.is_(True)
                & Member.sms_opted_out_at.is_(None)).label("takes_sms"),
               (Member.email.is_not(None) & Member.email_discussion.is_(True)
                & Member.email_opted_out_at.is_(None) & Member.email_suspended_at.is_(None)).label("takes_email"))
        .where(Member.active.is_(True), member_filter)
        .distinct()
        .order_by(Member.id)
    )
    if exclude_member_id is not None:
        query = query.where(Member.id != exclude_member_id)
    return session.execute(query).all()


def participants(session: Session, thread_id: int, exclude_member_id: int | None):
    """Members following the thread, with the channels they take now."""
    followers = select(Participant.member_id).where(Participant.thread_id == thread_id)
    return reachable_members(session, Member.id.in_(followers), exclude_member_id)


CHANNELS = ("sms", "email")


@dataclass(frozen=True)
class Recipient:
    member_id: int
    phone: str | None
    email: str | None
    language: str
    channels: tuple[str, ...]  # the channels a message goes to them on, in CHANNELS order


def recipients_from(members, wanted: set[str], allowed: dict[int, set[str]] | None = None) -> list[Recipient]:
    """Recipients from reachable_members() rows: the wanted channels each takes (and, if given, is allowed)."""
    found = []
    for m in members:
        takes = {"sms": m.takes_sms, "email": m.takes_email}
        channels = tuple(c for c in CHANNELS if c in wanted and takes[c]
                         and (allowed is None or c in allowed.get(m.id, ())))
        if channels:
            found.append(Recipient(m.id, m.phone, m.email, m.language or "en", channels))
    return found


def delivery_rows(recipients: list[Recipient], *, purpose: str, post_id: int | None, case_id: int | None,
                  sms_text, email_body: str, key=None) -> list[dict]:
    """One delivery row per recipient x channel: `sms_text(language)` gives the SMS body; the email is
    composed when it is sent. Keyed by post (`key(member_id, channel)` for messages with no post)."""
    rows = []
    for r in recipients:
        for channel in r.channels:
            dedupe_key = key(r.member_id, channel) if key else f"post:{post_id}:{r.member_id}:{channel}"
            rows.append({"dedupe_key": dedupe_key,
                         "purpose": purpose, "post_id": post_id, "case_id": case_id, "member_id": r.member_id,
                         "channel": channel, "to_address": r.phone if channel == "sms" else r.email,
                         "body": sms_text(r.language) if channel == "sms" else email_body})
    return rows


def follow(session: Session, thread_id: int, member_ids: list[int], reason: str) -> None:
    """Make members participants of a thread (idempotent)."""
    now = utcnow()
    insert_ignoring_conflicts(session, Participant.__table__, [
        {"thread_id": thread_id, "member_id": mid, "reason": reason, "created_at": now} for mid in member_ids
    ])
