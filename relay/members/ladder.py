"""The consent ladder, one model for SMS and email: per member and channel, from most to least:

    START (everything) > DIGEST (the digest instead of each message) > URGENT ONLY > PAUSE (until a
    time; urgent still goes) > STOP (nothing; relay/members/consent.py, synced with Twilio 21610, absolute)

plus MUTE C123 (one case, never, not even urgent) and quiet hours (routine messages wait until the
member's local morning). Every change is written to the consent log (ConsentEvent: time, source)
and the caller confirms it to the member.

`shape_rows` is the one place fan-out asks: it drops the planned relay and notice rows the member's
ladder refuses, and gives the rest a not-before time (Delivery.next_attempt_at) when they would land
in quiet hours; the atomic claim and the sweeper already respect that time."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, false, select, update
from sqlalchemy.orm import Session

from relay.infra.counters import increment
from relay.infra.storage import in_values, insert_if_new
from relay.members.consent import log_event
from relay.members.subscriptions import ensure_member_subscription
from relay.model.channels import CHANNELS
from relay.model.notice_refs import notice_id_in_key
from relay.model.tables import (
    Case,
    CaseMute,
    ChannelPreference,
    Delivery,
    ListDigestChoice,
    Member,
    MemberList,
    Membership,
    Notice,
    ReachDaily,
    utcnow,
)
from relay.model.translatable import N_, Translatable

MODES = ("all", "digest", "urgent_only")
PAUSES = {"24H": timedelta(hours=24), "7D": timedelta(days=7)}
DEFAULT_QUIET = ("22:00", "07:00")
# What the ladder governs: case discussion and notices. Confirmations, help and digests are answers
# to the member's own action and always go (STOP aside, which nothing passes).
GOVERNED = frozenset({"relay", "notice"})


class LadderError(Translatable, ValueError):
    """A preference change that cannot be made as asked; the message says why."""


def zone(name: str | None) -> ZoneInfo:
    """The member's IANA zone; an unknown name falls back to UTC rather than failing a fan-out."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def preference(session: Session, member_id: int, channel: str) -> ChannelPreference:
    """The member's preference row for the channel, created with the defaults when missing."""
    if channel not in CHANNELS:
        raise LadderError(N_("channel must be sms or email, got %(value)s"), value=repr(channel))
    insert_if_new(session, ChannelPreference.__table__, {
        "member_id": member_id, "channel": channel, "mode": "all", "paused_until": None,
        "quiet_start": None, "quiet_end": None, "updated_at": utcnow()})
    row = session.scalar(select(ChannelPreference).where(ChannelPreference.member_id == member_id,
                                                         ChannelPreference.channel == channel))
    if row is None:  # insert_if_new made sure of it in this transaction
        raise RuntimeError(f"preference {member_id}/{channel} missing after insert")
    return row


def set_mode(session: Session, member: Member, channel: str, mode: str, source: str) -> bool:
    """DIGEST, URGENT ONLY or back to everything; False when it already was so."""
    if mode not in MODES:
        raise LadderError(N_("mode must be one of %(modes)s, got %(value)s"), modes=", ".join(MODES), value=repr(mode))
    pref = preference(session, member.id, channel)
    if mode == "digest":  # (again) a digest subscription, also after unsubscribing from the digest alone
        ensure_member_subscription(session, member, channel)
    if pref.mode == mode:
        return False
    pref.mode = mode
    log_event(session, member.id, channel, mode, source)
    return True


def pause(session: Session, member: Member, channel: str, length: timedelta, source: str,
          now: datetime | None = None) -> datetime:
    """PAUSE 24H / 7D: nothing routine until the returned time."""
    until = (now or utcnow()) + length
    preference(session, member.id, channel).paused_until = until
    log_event(session, member.id, channel, f"pause:{_length(length)}", source)
    return until


def resume(session: Session, member: Member, channel: str, source: str) -> bool:
    """START: everything again (mode all, no pause); False when nothing changed."""
    pref = preference(session, member.id, channel)
    if pref.mode == "all" and pref.paused_until is None:
        return False
    pref.mode, pref.paused_until = "all", None
    log_event(session, member.id, channel, "resume", source)
    return True


def set_quiet_hours(session: Session, member: Member, channel: str, start: str, end: str, source: str) -> bool:
    """Quiet hours as local HH:MM; start == end means none."""
    start, end = parse_hhmm(start), parse_hhmm(end)
    pref = preference(session, member.id, channel)
    current = (pref.quiet_start, pref.quiet_end) if pref.quiet_start and pref.quiet_end else default_quiet(session)
    if current == (start, end):
        return False
    pref.quiet_start, pref.quiet_end = start, end
    log_event(session, member.id, channel, f"quiet:{start}-{end}", source)
    return True


def mute(session: Session, member: Member, channel: str, case_id: int, code: str, source: str) -> bool:
    created = insert_if_new(session, CaseMute.__table__, {"member_id": member.id, "case_id": case_id,
                                                          "channel": channel, "created_at": utcnow()})
    if created is not None:
        log_event(session, member.id, channel, f"mute:{code}", source)
    return created is not None


def unmute(session: Session, member: Member, channel: str, case_id: int, code: str, source: str) -> bool:
    removed = session.execute(delete(CaseMute).where(CaseMute.member_id == member.id, CaseMute.case_id == case_id,  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                                                     CaseMute.channel == channel)
                              .execution_options(synchronize_session=False)).rowcount
    if removed:
        log_event(session, member.id, channel, f"unmute:{code}", source)
    return bool(removed)


def muted_case_ids(session: Session, member_id: int, channel: str) -> set[int]:
    return set(session.scalars(select(CaseMute.case_id).where(CaseMute.member_id == member_id,
                                                              CaseMute.channel == channel)))


def parse_hhmm(text: str) -> str:
    match = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*", text or "")
    if not match:
        raise LadderError(N_("expected a time like 22:00, got %(value)s"), value=repr(text))
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _length(length: timedelta) -> str:
    hours = int(length.total_seconds() // 3600)
    return f"{hours // 24}d" if hours >= 48 and hours % 24 == 0 else f"{hours}h"


def default_quiet(session: Session) -> tuple[str, str]:
    """Quiet hours of members who chose none: RELAY_QUIET_HOURS, handed to sessions by relay/services.py."""
    setting = session.info.get("quiet_hours", "-".join(DEFAULT_QUIET))
    if setting == "off":
        return ("00:00", "00:00")
    start, end = setting.split("-")
    return (start, end)


def quiet_until(timezone_name: str | None, start: str, end: str, now: datetime) -> datetime | None:
    """When the quiet window that `now` falls in ends (UTC), or None when `now` is not quiet.
    Computed on the member's local wall clock, so it stays right across daylight-saving changes."""
    if start == end:
        return None
    tz = zone(timezone_name)
    local = now.astimezone(tz)
    s, e = time.fromisoformat(start), time.fromisoformat(end)
    clock = local.time().replace(tzinfo=None)
    crosses_midnight = s > e
    quiet = (clock >= s or clock < e) if crosses_midnight else (s <= clock < e)
    if not quiet:
        return None
    day = local.date() + timedelta(days=1) if crosses_midnight and clock >= s else local.date()
    return datetime.combine(day, e, tzinfo=tz).astimezone(now.tzinfo)


def quiet_overlap(timezone_name: str | None, start: str, end: str, since: datetime, until: datetime) -> timedelta:
    """How much of [since, until) fell in the quiet window start-end on the member's local clock
    (each night taken on its own date, so a night when the clocks change is as long as it really is)."""
    if start == end or until <= since:
        return timedelta(0)
    tz = zone(timezone_name)
    s, e = time.fromisoformat(start), time.fromisoformat(end)
    total = timedelta(0)
    day, last = since.astimezone(tz).date() - timedelta(days=1), until.astimezone(tz).date()
    while day <= last:
        opens = datetime.combine(day, s, tzinfo=tz).astimezone(since.tzinfo)
        closes = datetime.combine(day + timedelta(days=1) if s > e else day, e, tzinfo=tz).astimezone(since.tzinfo)
        overlap = min(until, closes) - max(since, opens)
        total += max(overlap, timedelta(0))
        day += timedelta(days=1)
    return total


def quiet_time_between(session: Session, member: Member, channel: str, since: datetime,
                       until: datetime) -> timedelta:
    """The part of [since, until) that was quiet for the member on `channel`, by their quiet hours now."""
    pref = session.scalar(select(ChannelPreference).where(ChannelPreference.member_id == member.id,
                                                          ChannelPreference.channel == channel))
    quiet = (pref.quiet_start, pref.quiet_end) if pref and pref.quiet_start and pref.quiet_end \
        else default_quiet(session)
    return quiet_overlap(member.timezone, *quiet, since, until)


@dataclass(frozen=True)
class _State:
    mode: str
    paused_until: datetime | None
    quiet: tuple[str, str]


def set_list_digest(session: Session, member: Member, channel: str, list_id: int, list_name: str, on: bool,
                    source: str) -> bool:
    """Switch one list to digest only on a channel (or back); False when it already was so."""
    if channel not in CHANNELS:
        raise LadderError(N_("channel must be sms or email, got %(value)s"), value=repr(channel))
    if on:
        changed = insert_if_new(session, ListDigestChoice.__table__, {
            "member_id": member.id, "list_id": list_id, "channel": channel, "created_at": utcnow()}) is not None
        ensure_member_subscription(session, member, channel)
    else:
        changed = bool(session.execute(delete(ListDigestChoice).where(  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
            ListDigestChoice.member_id == member.id, ListDigestChoice.list_id == list_id,
            ListDigestChoice.channel == channel).execution_options(synchronize_session=False)).rowcount)
    if changed:
        log_event(session, member.id, channel, f"{'digest' if on else 'all'}:{list_name}", source)
    return changed


def _digest_only_by_list(session: Session, rows: list[dict], candidates: list[int]) -> set[int]:
    """Indexes of notice rows whose member is, on that channel, digest-only for every one of the notice's
    lists they belong to (a notice also sent to a list they take in full still reaches them)."""
    notice_rows = [i for i in candidates if rows[i]["purpose"] == "notice"]
    if not notice_rows:
        return set()
    member_ids = sorted({rows[i]["member_id"] for i in notice_rows})
    digest: dict[tuple[int, str], set[str]] = {}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        for member_id, channel, name in session.execute(select(
                ListDigestChoice.member_id, ListDigestChoice.channel, MemberList.name).join(
                MemberList, MemberList.id == ListDigestChoice.list_id).where(
                in_values(session, ListDigestChoice.member_id, chunk))):
            digest.setdefault((member_id, channel), set()).add(name)
    if not digest:  # nobody here chose a digest for a list: the usual case, and one query (issue 18)
        return set()
    chosen_by = sorted({member_id for member_id, _ in digest})  # only they can be digest-only for a notice
    memberships: dict[int, set[str]] = {}
    for start in range(0, len(chosen_by), 500):
        for member_id, name in session.execute(select(Membership.member_id, MemberList.name).join(
                MemberList, MemberList.id == Membership.list_id).where(
                in_values(session, Membership.member_id, chosen_by[start:start + 500]))):
            memberships.setdefault(member_id, set()).add(name)
    post_ids = {rows[i].get("post_id") for i in notice_rows} - {None}
    notice_ids = {notice_id_in_key(rows[i]["dedupe_key"]) for i in notice_rows} - {None}
    lists_by_post, lists_by_notice = {}, {}
    if post_ids:
        lists_by_post = dict(session.execute(select(Notice.post_id, Notice.lists).where(Notice.post_id.in_(post_ids))).all())
    if notice_ids:
        lists_by_notice = dict(session.execute(select(Notice.id, Notice.lists).where(Notice.id.in_(notice_ids))).all())
    found = set()
    for i in notice_rows:
        row = rows[i]
        notice_id = notice_id_in_key(row["dedupe_key"])
        lists = (lists_by_post.get(row.get("post_id"))
                 or (lists_by_notice.get(notice_id) if notice_id is not None else None) or "")
        theirs = {n for n in lists.split(";") if n} & memberships.get(row["member_id"], set())
        chosen = digest.get((row["member_id"], row.get("channel", "sms")), set())
        if theirs and theirs <= chosen:
            found.add(i)
    return found


def _urgent_rows(session: Session, rows: list[dict]) -> set[int]:
    """Indexes of the rows that belong to an urgent notice."""
    post_ids = {r["post_id"] for r in rows if r["purpose"] == "notice" and r.get("post_id")}
    notice_ids = {notice_id_in_key(r["dedupe_key"]) for r in rows if r["purpose"] == "notice"} - {None}
    urgent_posts: set[int] = set()
    urgent_notices: set[int] = set()
    if post_ids:
        urgent_posts = set(session.scalars(select(Notice.post_id).where(Notice.post_id.in_(post_ids),
                                                                        Notice.severity == "urgent")))
    if notice_ids:
        urgent_notices = set(session.scalars(select(Notice.id).where(Notice.id.in_(notice_ids),
                                                                     Notice.severity == "urgent")))
    return {i for i, r in enumerate(rows) if r["purpose"] == "notice" and (
        r.get("post_id") in urgent_posts or notice_id_in_key(r["dedupe_key"]) in urgent_notices)}


def shape_rows(session: Session, rows: list[dict], now: datetime | None = None,
               urgent: bool | None = None, zones: Mapping[int, str | None] | None = None) -> list[dict]:
    """Planned delivery rows, less those the members' ladders refuse; quiet-hour rows get a not-before time.

    Muted case: never. Paused, digest-only or urgent-only: only urgent notices. Quiet hours: routine
    waits until the window ends; urgent goes at once. `urgent` overrides the severity read from the
    rows' notices (the preview asks about a notice that has no deliveries yet). `zones`: the members'
    time zones when the caller has just read them (the send-time checks), else read here."""
    now = now or utcnow()
    for row in rows:
        row.setdefault("next_attempt_at", None)
    governed = [r for r in rows if r["purpose"] in GOVERNED and r.get("member_id") is not None]
    if not governed:
        return rows
    member_ids = sorted({r["member_id"] for r in governed})
    states: dict[tuple[int, str], _State] = {}
    known_zones = zones is not None and all(member_id in zones for member_id in member_ids)
    found_zones: dict[int, str | None] = dict(zones) if known_zones and zones is not None else {}
    mutes: set[tuple[int, int, str]] = set()
    case_ids = {r["case_id"] for r in governed if r.get("case_id")}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        for p in session.scalars(select(ChannelPreference).where(in_values(session, ChannelPreference.member_id, chunk))):
            quiet = (p.quiet_start, p.quiet_end) if p.quiet_start and p.quiet_end else default_quiet(session)
            states[(p.member_id, p.channel)] = _State(p.mode, p.paused_until, quiet)
        if not known_zones:
            found_zones.update(session.execute(select(Member.id, Member.timezone).where(in_values(session, Member.id, chunk))).all())
        if case_ids:
            mutes.update(session.execute(select(CaseMute.member_id, CaseMute.case_id, CaseMute.channel).where(
                in_values(session, CaseMute.member_id, chunk), in_values(session, CaseMute.case_id, sorted(case_ids)))).all())
    urgent_rows = _urgent_rows(session, rows) if urgent is None else (set(range(len(rows))) if urgent else set())
    default = _State("all", None, default_quiet(session))
    by_list = _digest_only_by_list(session, rows, [i for i, r in enumerate(rows) if r["purpose"] == "notice"
                                                   and r.get("member_id") is not None and i not in urgent_rows])
    kept = []
    for i, row in enumerate(rows):
        if row["purpose"] not in GOVERNED or row.get("member_id") is None:
            kept.append(row)
            continue
        member_id, channel = row["member_id"], row.get("channel", "sms")  # plan() defaults to sms
        if (member_id, row.get("case_id"), channel) in mutes:
            continue
        state = states.get((member_id, channel), default)
        if i not in urgent_rows:
            if state.mode != "all" or (state.paused_until is not None and state.paused_until > now) or i in by_list:
                continue
            row["next_attempt_at"] = quiet_until(found_zones.get(member_id), *state.quiet, now)
        kept.append(row)
    return kept


HELD_BACK = "held_back"  # the reach_daily series counting deliveries the ladder dropped when planned (issue 20)


def count_held_back(session: Session, refused: list[dict], now: datetime | None = None) -> None:
    """Count planned deliveries the ladder dropped (no row is left to count them by) in the Reach rollup,
    per UTC day and channel: one atomic increment each, in the plan's transaction (a plan rolled back
    counts nothing). Planning calls this; a preview does not."""
    by_channel: dict[str, int] = {}
    for row in refused:
        channel = row.get("channel", "sms")
        by_channel[channel] = by_channel.get(channel, 0) + 1
    day = (now or utcnow()).date()
    for channel, count in sorted(by_channel.items()):
        increment(session, ReachDaily.__table__, {"day": day, "series": HELD_BACK, "label": channel[:40]}, "count",
                  count)


def describe(session: Session, member: Member, now: datetime | None = None) -> dict[str, dict]:
    """Each channel's state for the preference page and HELP-like answers."""
    now = now or utcnow()
    found = {}
    for channel in CHANNELS:
        pref = session.scalar(select(ChannelPreference).where(ChannelPreference.member_id == member.id,
                                                              ChannelPreference.channel == channel))
        opted_out = member.opted_out_at(channel) is not None
        paused = pref.paused_until if pref is not None and pref.paused_until and pref.paused_until > now else None
        digest_lists = set(session.scalars(select(MemberList.name).join(
            ListDigestChoice, ListDigestChoice.list_id == MemberList.id).where(
            ListDigestChoice.member_id == member.id, ListDigestChoice.channel == channel)))
        codes = sorted(session.scalars(select(Case.number).join(CaseMute, CaseMute.case_id == Case.id).where(
            CaseMute.member_id == member.id, CaseMute.channel == channel)))
        found[channel] = {
            "address": member.address_for(channel),
            "chosen": channel in member.channels,
            "opted_in": channel != "whatsapp" or member.whatsapp_opted_in_at is not None,
            "stopped": opted_out, "mode": pref.mode if pref else "all", "paused_until": paused,
            "quiet_start": (pref.quiet_start if pref and pref.quiet_start else default_quiet(session)[0]),
            "quiet_end": (pref.quiet_end if pref and pref.quiet_end else default_quiet(session)[1]),
            "muted": [f"C{n}" for n in codes],
            "lists": [(name, name in digest_lists) for name in sorted(
                session.scalars(select(MemberList.name).join(Membership, Membership.list_id == MemberList.id)
                                .where(Membership.member_id == member.id)))]}
    return found


__all__ = ["CHANNELS", "HELD_BACK", "MODES", "PAUSES", "LadderError", "count_held_back", "describe", "mute", "pause",
           "preference", "set_list_digest", "quiet_overlap", "quiet_time_between", "quiet_until", "resume", "set_mode", "set_quiet_hours", "shape_rows",
           "unmute", "zone"]


def preview_split(session: Session, recipients, urgent: bool, case_id: int | None,
                  now: datetime | None = None) -> tuple[set[tuple[int, str]], list[tuple[int, str]],
                                                        list[tuple[int, str]]]:
    """A notice's would-be deliveries as (member id, channel), split for the preview the way sending
    splits them: (going now, held back by the ladder, waiting for quiet hours to end)."""
    rows = [{"dedupe_key": f"preview:{r.member_id}:{c}", "purpose": "notice", "member_id": r.member_id,
             "case_id": case_id, "channel": c, "post_id": None} for r in recipients for c in r.channels]
    kept = shape_rows(session, rows, now, urgent=urgent)
    kept_pairs = {(r["member_id"], r["channel"]) for r in kept}
    held = [(r["member_id"], r["channel"]) for r in rows if (r["member_id"], r["channel"]) not in kept_pairs]
    waiting = [(r["member_id"], r["channel"]) for r in kept if r["next_attempt_at"] is not None]
    going = kept_pairs - set(waiting)
    return going, held, waiting


def _members_a_ladder_may_touch(session: Session, where, now: datetime):
    """A filter on a plan's deliveries: only members with a preference, a mute or a per-list digest
    choice, or whose time zone is in the default quiet hours now, can have a row refused or delayed.
    Everyone else's rows would come back from shape_rows() unchanged, so shape_planned() never reads
    them: a 100,000-member plan costs what its few shaped members cost, not a pass over every row."""
    quiet = default_quiet(session)
    in_plan = select(Delivery.member_id).where(where)
    zones = session.scalars(select(Member.timezone).where(Member.id.in_(in_plan)).distinct()).all()
    quiet_zones = [zone for zone in zones if quiet_until(zone, *quiet, now) is not None]
    return Delivery.member_id.in_(
        select(ChannelPreference.member_id)
        .union(select(CaseMute.member_id), select(ListDigestChoice.member_id),
               select(Member.id).where(Member.timezone.in_([z for z in quiet_zones if z is not None])
                                       | (Member.timezone.is_(None) if None in quiet_zones else false()))))


def shape_planned(session: Session, where, now: datetime | None = None, chunk: int = 1000) -> int:
    """shape_rows() for deliveries a broadcast planned set-wise (INSERT ... SELECT, relay/notices/lifecycle.py):
    those the members' ladders refuse are deleted before the plan commits, and quiet-hour ones get their
    not-before time. A chunk of rows at a time, so a 100,000-member notice never sits in memory whole.
    Only untouched rows (queued, never attempted) are shaped, so running it again changes nothing.
    Returns how many rows were refused."""
    now = now or utcnow()
    touched = _members_a_ladder_may_touch(session, where, now)
    refused_total, last = 0, 0
    while True:
        rows = [dict(r) for r in session.execute(
            select(Delivery.id, Delivery.dedupe_key, Delivery.purpose, Delivery.member_id, Delivery.channel,
                   Delivery.case_id, Delivery.post_id)
            .where(where, touched, Delivery.status == "queued", Delivery.attempts == 0, Delivery.id > last)
            .order_by(Delivery.id).limit(chunk)).mappings()]
        if not rows:
            return refused_total
        last = rows[-1]["id"]
        kept = shape_rows(session, rows, now)
        kept_ids = {r["id"] for r in kept}
        refused = [r["id"] for r in rows if r["id"] not in kept_ids]
        if refused:
            session.execute(delete(Delivery).where(Delivery.id.in_(refused)).execution_options(synchronize_session=False))
            refused_total += len(refused)
            count_held_back(session, [r for r in rows if r["id"] not in kept_ids], now)
        waits: dict[datetime, list[int]] = {}
        for row in kept:
            if row.get("next_attempt_at") is not None:
                waits.setdefault(row["next_attempt_at"], []).append(row["id"])
        for when, ids in waits.items():
            session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(next_attempt_at=when)
                            .execution_options(synchronize_session=False))
