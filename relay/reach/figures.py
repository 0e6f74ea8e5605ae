"""The Reach page's numbers for a period, each as a table (headers and rows) so that the chart, the table
under it and its CSV all show the same figures. Authorised here, in the core: `reach.read`.

Fast on a year of data: readers and case views are daily rows already; deliveries and replies come from
the sweeper's rollup (relay/reach/rollups.py) for settled days and from the created_at indexes for the
days after; members by country from the sweeper's snapshot of the cached country of each number (or time
zone); deliveries the ladder dropped when planned from their daily counter in the same rollup table;
acknowledgement rates from the few notices of the period that asked for one."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from relay.access.permissions import require
from relay.members.ladder import HELD_BACK
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import (
    Case,
    CaseDayViews,
    ConsentEvent,
    Delivery,
    Notice,
    Post,
    ReachDaily,
    ReaderDay,
)
from relay.model.urgent import Acknowledgement

from .days import as_date, day_of, midnight, week_of
from .periods import Period
from .rollups import BY_ZONE, UNPLACED, count_members_by_country, delivery_outcome, rolled_until

TOP_CASES = 20
TOP_ACK_NOTICES = 20  # the acknowledgement chart shows the period's latest notices that asked for one
# a delivery's status, as the Reach page groups it (held_back: the ladder held it back, relay/reach/rollups.py)
OUTCOMES = {"delivered": "delivered", "read": "read", "sent": "sent", "accepted": "sent", "failed": "failed",
            "undelivered": "failed", "opted_out": "opted_out", "queued": "waiting", "sending": "waiting",
            "held": "held", HELD_BACK: HELD_BACK}
OUTCOME_ORDER = ("delivered", "read", "sent", "waiting", "held", HELD_BACK, "failed", "opted_out")
CHANNEL_ORDER = ("sms", "email", "whatsapp", "voice", "web", "console", "mms", "intake", "api")
CHARTS = ("readers", "cases", "deliveries", "held_back", "acks", "replies", "countries", "consent")


@dataclass
class Table:
    """One chart's numbers: `headers` and `rows`, the first column the category (a day, a case, ...)."""

    name: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)

    def totals(self) -> list[int]:
        return [sum(row[i] for row in self.rows) for i in range(1, len(self.headers))
                if all(isinstance(row[i], int) for row in self.rows)]


@dataclass
class Figures:
    period: Period
    readers: Table  # day, visitors, members
    cases: Table  # case, title, views
    deliveries: Table  # channel, then one column per outcome
    held_back: Table  # week, then one column per channel: deliveries the ladder held back
    acks: Table  # notice, title, rate (%), recipients, acknowledged, then one column per channel
    notices_sent: int
    replies: Table  # day, then one column per channel
    countries: Table  # country, members
    country_count: int
    unplaced: int  # active members whose number is not placed yet (or who have none)
    consent: Table  # week, opt-outs, ladder changes

    def table(self, name: str) -> Table:
        if name not in CHARTS:
            raise KeyError(f"no chart {name!r}: choose one of {', '.join(CHARTS)}")
        return getattr(self, name)


def _range(period: Period):
    return midnight(period.start), midnight(period.end + timedelta(days=1))


def readers_per_day(session: Session, period: Period) -> Table:
    found = {row.day: row for row in session.scalars(
        select(ReaderDay).where(ReaderDay.day >= period.start, ReaderDay.day <= period.end))}
    return Table("readers", ["day", "visitors", "members"],
                 [[day.isoformat(), found[day].visitors if day in found else 0,
                   found[day].members if day in found else 0] for day in period.days])


def top_cases(session: Session, period: Period, limit: int = TOP_CASES) -> Table:
    views = func.sum(CaseDayViews.views).label("views")
    top = (select(CaseDayViews.case_id, views)
           .where(CaseDayViews.day >= period.start, CaseDayViews.day <= period.end)
           .group_by(CaseDayViews.case_id).order_by(views.desc(), CaseDayViews.case_id).limit(limit).subquery())
    rows = session.execute(select(Case.number, Case.title, top.c.views).join(top, top.c.case_id == Case.id)
                           .order_by(top.c.views.desc(), Case.number))
    return Table("cases", ["case", "title", "views"], [[f"C{number}", title, int(count)]
                                                       for number, title, count in rows])


def _split(session: Session, period: Period) -> tuple[date, date]:
    """The days read from the rollup are [period.start, live); those from live on are counted from rows."""
    until = rolled_until(session) or period.start
    live = max(period.start, min(until, period.end + timedelta(days=1)))
    return live, period.end + timedelta(days=1)


def _rolled(session: Session, series: str, period: Period, live: date):
    return session.execute(select(ReachDaily.day, ReachDaily.label, func.sum(ReachDaily.count)).where(
        ReachDaily.series == series, ReachDaily.day >= period.start, ReachDaily.day < live)
        .group_by(ReachDaily.day, ReachDaily.label))


def ordered(found: Iterable[str], order: tuple[str, ...]) -> list[str]:
    return sorted(set(found), key=lambda name: (order.index(name) if name in order else len(order), name))


def _delivery_counts(session: Session, period: Period) -> dict[tuple[date, str, str], int]:
    """Deliveries per (day, channel, outcome) in the period: settled days from the rollup, later days from
    the rows; and the deliveries the ladder dropped when they were planned (their daily counter)."""
    live, end = _split(session, period)
    counts: dict[tuple[date, str, str], int] = defaultdict(int)
    for day, label, count in _rolled(session, "deliveries", period, live):
        channel, _, status = label.partition(":")
        counts[(as_date(day), channel, OUTCOMES.get(status, status))] += int(count)
    if live < end:
        day, outcome = day_of(session, Delivery.created_at), delivery_outcome()
        rows = session.execute(select(day, Delivery.channel, outcome, func.count()).where(
            Delivery.created_at >= midnight(live), Delivery.created_at < midnight(end))
            .group_by(day, Delivery.channel, outcome))
        for when, channel, status, count in rows:
            counts[(as_date(when), channel, OUTCOMES.get(status, status))] += int(count)
    for day, channel, count in session.execute(select(ReachDaily.day, ReachDaily.label, ReachDaily.count).where(
            ReachDaily.series == HELD_BACK, ReachDaily.day >= period.start, ReachDaily.day <= period.end)):
        counts[(as_date(day), channel, HELD_BACK)] += int(count)
    return counts


def deliveries_by_outcome(session: Session, period: Period,
                          found: dict[tuple[date, str, str], int] | None = None) -> Table:
    by_outcome: dict[tuple[str, str], int] = defaultdict(int)
    for (_day, channel, outcome), count in (found if found is not None else _delivery_counts(session, period)).items():
        by_outcome[(channel, outcome)] += count
    channels = ordered((c for c, _ in by_outcome), CHANNEL_ORDER)
    outcomes = ordered((o for _, o in by_outcome), OUTCOME_ORDER)
    return Table("deliveries", ["channel", *outcomes],
                 [[channel, *(by_outcome.get((channel, o), 0) for o in outcomes)] for channel in channels])


def held_back_per_week(session: Session, period: Period,
                       found: dict[tuple[date, str, str], int] | None = None) -> Table:
    """Deliveries the ladder held back (dropped when planned, or refused at send time) per ISO week and channel."""
    weeks: dict[date, dict[str, int]] = {week_of(d): defaultdict(int) for d in period.days}
    for (day, channel, outcome), count in (found if found is not None else _delivery_counts(session, period)).items():
        if outcome == HELD_BACK:
            weeks[week_of(day)][channel] += count
    channels = ordered((c for counts in weeks.values() for c in counts), CHANNEL_ORDER) or ["sms", "email"]
    return Table("held_back", ["week", *channels],
                 [[week.isoformat(), *(counts.get(c, 0) for c in channels)] for week, counts in sorted(weeks.items())])


def acknowledgement_rates(session: Session, period: Period, limit: int = TOP_ACK_NOTICES) -> Table:
    """Each notice sent in the period that asked for acknowledgement (issue 17), the latest `limit`, newest
    first: the share of its recipients (members it was planned for) who acknowledged, and by which channel."""
    start, end = _range(period)
    notices = session.scalars(select(Notice).where(
        Notice.ack_within_s.is_not(None), Notice.sent_at >= start, Notice.sent_at < end)
        .order_by(Notice.sent_at.desc(), Notice.id.desc()).limit(limit)).all()
    by_channel: dict[tuple[int, str], int] = {}
    if notices:
        by_channel = {(notice_id, channel): int(n) for notice_id, channel, n in session.execute(
            select(Acknowledgement.notice_id, Acknowledgement.channel, func.count())
            .where(Acknowledgement.notice_id.in_([n.id for n in notices]))
            .group_by(Acknowledgement.notice_id, Acknowledgement.channel))}
    channels = ordered((c for _, c in by_channel), CHANNEL_ORDER)
    rows = []
    for notice in notices:
        recipients = session.scalar(select(func.count(func.distinct(Delivery.member_id))).where(
            deliveries_filter(notice), Delivery.member_id.is_not(None))) or 0
        acknowledged = sum(n for (notice_id, _), n in by_channel.items() if notice_id == notice.id)
        rate = round(100 * acknowledged / recipients, 1) if recipients else 0.0
        rows.append([f"#{notice.id}", notice.title or notice.kind, rate, int(recipients), acknowledged,
                     *(by_channel.get((notice.id, c), 0) for c in channels)])
    return Table("acks", ["notice", "title", "rate", "recipients", "acknowledged", *channels], rows)


def replies_per_day(session: Session, period: Period) -> Table:
    live, end = _split(session, period)
    counts: dict[tuple[date, str], int] = defaultdict(int)
    for day, label, count in _rolled(session, "replies", period, live):
        counts[(as_date(day), label)] += int(count)
    if live < end:
        day = day_of(session, Post.created_at)
        rows = session.execute(select(day, Post.channel, func.count()).where(
            Post.kind == "reply", Post.created_at >= midnight(live), Post.created_at < midnight(end))
            .group_by(day, Post.channel))
        for when, channel, count in rows:
            counts[(as_date(when), channel)] += int(count)
    channels = ordered((c for _, c in counts), CHANNEL_ORDER) or ["sms", "email"]
    return Table("replies", ["day", *channels],
                 [[d.isoformat(), *(counts.get((d, c), 0) for c in channels)] for d in period.days])


def notices_sent(session: Session, period: Period) -> int:
    start, end = _range(period)
    return session.scalar(select(func.count()).select_from(Notice).where(
        Notice.sent_at >= start, Notice.sent_at < end)) or 0


def members_by_country(session: Session) -> tuple[Table, int, int]:
    """Active members by country — of their number, else of their time zone when the number names none
    (the newest snapshot the sweeper took, else counted now): the table (country, members, by number, by
    time zone), how many countries, and how many active members are not placed (neither names a country,
    or a new number not read yet)."""
    latest = select(func.max(ReachDaily.day)).where(ReachDaily.series == "countries").scalar_subquery()
    snapshot = session.execute(select(ReachDaily.label, ReachDaily.count).where(
        ReachDaily.series == "countries", ReachDaily.day == latest)).all()
    counts = {label: int(count) for label, count in snapshot} if snapshot else count_members_by_country(session)
    unplaced = counts.pop(UNPLACED, 0)
    by_number: dict[str, int] = defaultdict(int)
    by_zone: dict[str, int] = defaultdict(int)
    for label, count in counts.items():
        if label.startswith(BY_ZONE):
            by_zone[label[len(BY_ZONE):]] += count
        else:
            by_number[label] += count
    totals = {country: by_number.get(country, 0) + by_zone.get(country, 0) for country in {*by_number, *by_zone}}
    rows = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return Table("countries", ["country", "members", "by number", "by time zone"],
                 [[country, count, by_number.get(country, 0), by_zone.get(country, 0)] for country, count in rows]
                 ), len(rows), unplaced


def consent_per_week(session: Session, period: Period) -> Table:
    start, end = _range(period)
    day = day_of(session, ConsentEvent.created_at)
    rows = session.execute(select(day, ConsentEvent.action, func.count()).where(
        and_(ConsentEvent.created_at >= start, ConsentEvent.created_at < end)).group_by(day, ConsentEvent.action))
    weeks = {week_of(d): [0, 0] for d in period.days}
    for when, action, count in rows:
        if action == "opt_in":
            continue  # a return is not a change of the ladder
        weeks[week_of(as_date(when))][0 if action == "opt_out" else 1] += int(count)
    return Table("consent", ["week", "opt-outs", "ladder changes"],
                 [[week.isoformat(), *counts] for week, counts in sorted(weeks.items())])


def reach_figures(session: Session, roles: Iterable[str], period: Period) -> Figures:
    """Everything the Reach page shows for `period`, for a caller with `roles`."""
    require(roles, "reach.read")
    countries, country_count, unplaced = members_by_country(session)
    found = _delivery_counts(session, period)
    return Figures(period=period, readers=readers_per_day(session, period), cases=top_cases(session, period),
                   deliveries=deliveries_by_outcome(session, period, found),
                   held_back=held_back_per_week(session, period, found), acks=acknowledgement_rates(session, period),
                   notices_sent=notices_sent(session, period),
                   replies=replies_per_day(session, period), countries=countries, country_count=country_count,
                   unplaced=unplaced, consent=consent_per_week(session, period))
