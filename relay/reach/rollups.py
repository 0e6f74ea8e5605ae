"""Rollups the sweeper maintains, so the Reach page reads a year in hundreds of rows, not millions:

- `reach_daily`: per closed UTC day, deliveries by channel and status and replies by channel. A day is
  rolled up once it is over, and the last SETTLE_DAYS days are rolled up again every REROLL_EVERY while
  late status callbacks and retries still change them; the heartbeat row `reach-rollup` holds the first
  day not rolled up yet, and figures.py counts that day and every later one live from the rows (on the
  created_at indexes), so a figure is never missing, only slower to compute;
- `reach_member_countries`: the country of each active member's number (phonenumbers), read again when
  the number changes; a member whose number names no country (none, e.g. email only) is placed by their
  time zone (CLDR's zone territories, in Babel) when the snapshot is counted;
- series `held_back` of `reach_daily` is not a rollup but a counter the ladder increments when it drops a
  planned delivery (relay/members/ladder.py count_held_back): a dropped delivery leaves no row to roll
  up, so rolling a day up again never deletes it.

The sweeper also destroys the salts and hashes of the reader count's past days
(relay/library/readership.py) here. Each step is idempotent: a day is rewritten whole."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from functools import lru_cache

from babel.core import get_global
from sqlalchemy import and_, case, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from relay.infra import heartbeats
from relay.infra.counters import put_many
from relay.infra.db import transaction
from relay.library.readership import DayStore, day_store_for
from relay.members.phones import country_of
from relay.model.delivery_states import OPTED_OUT
from relay.model.tables import Delivery, Member, MemberCountry, Post, ReachDaily, utcnow

from .days import midnight

log = logging.getLogger(__name__)

SETTLE_DAYS = 7  # a day's deliveries may still change status this long after (retries, late callbacks)
MARK = "reach-rollup"
REROLL_MARK = "reach-reroll"  # when the last SETTLE_DAYS days were last rolled up again
REROLL_EVERY = timedelta(minutes=10)
COUNTRIES_MARK = "reach-countries"  # when the members-by-country snapshot was last taken
COUNTRIES_EVERY = timedelta(minutes=10)  # taken again at least this often (deactivations), and after any change
DAYS_PER_SWEEP = 31
COUNTRIES_PER_SWEEP = 5000
_stores: dict[tuple[str, str], DayStore] = {}


def rolled_until(session: Session) -> date | None:
    """The first day not rolled up yet (every day before it is in reach_daily), or None."""
    at = heartbeats.last(session, MARK)
    return at.date() if at is not None else None


def _first_day(session: Session) -> date | None:
    first = [session.scalar(select(func.min(Delivery.created_at))), session.scalar(select(func.min(Post.created_at)))]
    found = [value.date() for value in first if value is not None]
    return min(found) if found else None


ROLLED = ("deliveries", "replies")  # the series roll_up_day rewrites
HELD_BACK_CODE = "preferences"  # error_code of a delivery the ladder refused at send time (relay/outbound/checks.py)


def delivery_outcome():
    """A delivery's status as the Reach page reads it: the status, except `held_back` for a delivery the
    member's ladder refused at send time (stored as opted_out with the code `preferences`)."""
    # constants written inline, not bound: PostgreSQL must see the GROUP BY expression as the SELECT's
    return case((and_(Delivery.status == literal_column(f"'{OPTED_OUT}'"),
                      Delivery.error_code == literal_column(f"'{HELD_BACK_CODE}'")), literal_column("'held_back'")),
                else_=Delivery.status)


def roll_up_day(session: Session, day: date) -> None:
    start, end = midnight(day), midnight(day + timedelta(days=1))
    session.execute(delete(ReachDaily).where(ReachDaily.day == day, ReachDaily.series.in_(ROLLED)))
    outcome = delivery_outcome()
    rows = session.execute(select(Delivery.channel, outcome, func.count()).where(
        Delivery.created_at >= start, Delivery.created_at < end).group_by(Delivery.channel, outcome))
    for channel, status, count in rows:
        session.add(ReachDaily(day=day, series="deliveries", label=f"{channel}:{status}"[:40], count=count))
    replies = session.execute(select(Post.channel, func.count()).where(
        Post.created_at >= start, Post.created_at < end, Post.kind == "reply").group_by(Post.channel))
    for channel, count in replies:
        session.add(ReachDaily(day=day, series="replies", label=channel[:40], count=count))


def roll_up(session: Session, today: date | None = None, max_days: int = DAYS_PER_SWEEP,
            now: datetime | None = None) -> int:
    """Roll up at most `max_days` closed days after the last one; once caught up, roll the last
    SETTLE_DAYS days again when REROLL_EVERY has passed (late status callbacks). Returns the days rolled."""
    now = now or utcnow()
    today = today or now.date()
    first = rolled_until(session) or _first_day(session) or today
    day, done = first, 0
    while day < today and done < max_days:
        roll_up_day(session, day)
        day, done = day + timedelta(days=1), done + 1
    if done or rolled_until(session) is None:
        heartbeats.mark(session, MARK, midnight(day))
    if day >= today:
        rerolled = heartbeats.last(session, REROLL_MARK)
        if rerolled is None or now - rerolled >= REROLL_EVERY:
            for back in range(SETTLE_DAYS, 0, -1):
                recent = today - timedelta(days=back)
                if not first <= recent < day:  # not the days this call has just rolled up
                    roll_up_day(session, recent)
            heartbeats.mark(session, REROLL_MARK, now)
    return done


def refresh_member_countries(session: Session, limit: int = COUNTRIES_PER_SWEEP) -> int:
    """Place up to `limit` members whose number is new or changed since it was read; returns how many."""
    rows = session.execute(
        select(Member.id, Member.phone).outerjoin(MemberCountry, MemberCountry.member_id == Member.id)
        .where(or_(MemberCountry.member_id.is_(None), MemberCountry.phone != func.coalesce(Member.phone, "")))
        .order_by(Member.id).limit(limit)).all()
    put_many(session, MemberCountry.__table__, ["member_id"],
             [{"member_id": member_id, "phone": phone or "", "country": country_of(phone) if phone else ""}
              for member_id, phone in rows])
    return len(rows)


UNPLACED = "-"  # the label of the active members without a placed number in a countries snapshot
BY_ZONE = "tz:"  # the label prefix of members placed by their time zone in a countries snapshot ("tz:DE")


@lru_cache(maxsize=1024)
def country_of_zone(name: str | None) -> str:
    """The country (ISO 3166 alpha-2) of an IANA time zone, from CLDR's zone territories as Babel ships
    them (old and new names alike: Asia/Calcutta and Asia/Kolkata), or "" for a zone that names no
    country (UTC, Etc/GMT+3) or an unknown name."""
    if not name:
        return ""
    aliases = get_global("zone_aliases")
    territory = get_global("zone_territories").get(aliases.get(name, name), "")
    return territory if len(territory) == 2 and territory.isalpha() and territory != "ZZ" else ""


def count_members_by_country(session: Session) -> dict[str, int]:
    """Active members by the country of their number, or of their time zone (label `tz:XX`) when their
    number, read, names none; counted from the rows (a join over every member: hundreds of milliseconds
    at 100,000 members, so the page reads the sweeper's snapshot instead)."""
    current = and_(Member.active.is_(True), MemberCountry.phone == func.coalesce(Member.phone, ""))
    rows = session.execute(
        select(MemberCountry.country, func.count()).join(Member, Member.id == MemberCountry.member_id)
        .where(current, MemberCountry.country != "").group_by(MemberCountry.country)).all()
    zones = session.execute(  # the number names no country: a few distinct zones, placed here
        select(Member.timezone, func.count()).join(MemberCountry, MemberCountry.member_id == Member.id)
        .where(current, MemberCountry.country == "").group_by(Member.timezone)).all()
    active = session.scalar(select(func.count()).select_from(Member).where(Member.active.is_(True))) or 0
    counts = {country: int(count) for country, count in rows}
    for zone, count in zones:
        country = country_of_zone(zone)
        if country:
            counts[BY_ZONE + country] = counts.get(BY_ZONE + country, 0) + int(count)
    counts[UNPLACED] = active - sum(counts.values())
    return counts


def snapshot_countries(session: Session, today: date | None = None) -> None:
    """Replace the members-by-country snapshot the Reach page reads (series "countries" of reach_daily,
    the day it was taken)."""
    today = today or utcnow().date()
    counts = count_members_by_country(session)
    session.execute(delete(ReachDaily).where(ReachDaily.series == "countries"))
    session.add_all([ReachDaily(day=today, series="countries", label=label, count=count)
                     for label, count in counts.items()])
    heartbeats.mark(session, COUNTRIES_MARK)


def sweep_reach(services) -> None:
    """The sweeper's share: roll up settled days, place new numbers, destroy past days' salts."""
    today = utcnow().date()
    try:
        with transaction(services.sessions) as session:
            days = roll_up(session, today)
            placed = refresh_member_countries(session)
            taken = heartbeats.last(session, COUNTRIES_MARK)
            if placed or taken is None or utcnow() - taken > COUNTRIES_EVERY:
                snapshot_countries(session, today)
        if days or placed:
            log.info("reach: rolled up %s days, placed %s members' numbers", days, placed)
        settings = services.settings
        key = (settings.broker_url, settings.broker_prefix)
        store = _stores.get(key) or _stores.setdefault(key, day_store_for(settings))
        store.forget_before(today)
    except Exception:  # figures must never stop the sweeper's real work; the next sweep tries again
        log.exception("reach: rollup failed; the page counts the missing days live meanwhile")
