"""The Reach page's numbers for a period, each as a table (headers and rows) so that the chart, the table
under it and its CSV all show the same figures. Authorised here, in the core: `reach.read`.

Fast on a year of data: readers and case views are daily rows already; deliveries and replies come from
the sweeper's rollup (relay/reach/rollups.py) for settled days and from the created_at indexes for the
days after; members by country from the cached country of each number."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from relay.access.permissions import require
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

from .days import as_date, day_of, midnight, week_of
from .periods import Period
from .rollups import UNPLACED, count_members_by_country, rolled_until

TOP_CASES = 20
# a delivery's status, as the Reach page groups it
OUTCOMES = {"delivered": "delivered", "read": "read", "sent": "sent", "accepted": "sent", "failed": "failed",
            "undelivered": "failed", "opted_out": "opted_out", "queued": "waiting", "sending": "waiting",
            "held": "held"}
OUTCOME_ORDER = ("delivered", "read", "sent", "waiting", "held", "failed", "opted_out")
CHANNEL_ORDER = ("sms", "email", "whatsapp", "web", "console", "mms", "intake", "api")
CHARTS = ("readers", "cases", "deliveries", "replies", "countries", "consent")


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


def deliveries_by_outcome(session: Session, period: Period) -> Table:
    live, end = _split(session, period)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for _day, label, count in _rolled(session, "deliveries", period, live):
        channel, _, status = label.partition(":")
        counts[(channel, OUTCOMES.get(status, status))] += int(count)
    if live < end:
        rows = session.execute(select(Delivery.channel, Delivery.status, func.count()).where(
            Delivery.created_at >= midnight(live), Delivery.created_at < midnight(end))
            .group_by(Delivery.channel, Delivery.status))
        for channel, status, count in rows:
            counts[(channel, OUTCOMES.get(status, status))] += int(count)
    channels = ordered((c for c, _ in counts), CHANNEL_ORDER)
    outcomes = ordered((o for _, o in counts), OUTCOME_ORDER)
    return Table("deliveries", ["channel", *outcomes],
                 [[channel, *(counts.get((channel, o), 0) for o in outcomes)] for channel in channels])


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
    """Active members by the country of their number (the newest snapshot the sweeper took, else counted
    now): the table, how many countries, and how many active members are not placed (no number, or not
    read yet)."""
    latest = select(func.max(ReachDaily.day)).where(ReachDaily.series == "countries").scalar_subquery()
    snapshot = session.execute(select(ReachDaily.label, ReachDaily.count).where(
        ReachDaily.series == "countries", ReachDaily.day == latest)).all()
    counts = {label: int(count) for label, count in snapshot} if snapshot else count_members_by_country(session)
    unplaced = counts.pop(UNPLACED, 0)
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Table("countries", ["country", "members"], [[country, count] for country, count in rows]), len(rows), unplaced


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
    return Figures(period=period, readers=readers_per_day(session, period), cases=top_cases(session, period),
                   deliveries=deliveries_by_outcome(session, period), notices_sent=notices_sent(session, period),
                   replies=replies_per_day(session, period), countries=countries, country_count=country_count,
                   unplaced=unplaced, consent=consent_per_week(session, period))
