"""The headline figures — "N members in M countries, K readers this month" — for the library's front
page (only while an admin has published them), `GET /api/v1/stats` and `relay stats --month`.

Members are the active members; countries those of their numbers or time zones (the sweeper's cache,
relay/reach/rollups.py); readers the month's daily distinct readers summed (visitors and signed-in
members; see relay/library/readership.py for why a month cannot be counted as distinct)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.access.permissions import require
from relay.infra import audit
from relay.model.tables import ReachPublication, ReaderDay, utcnow

from .figures import members_by_country
from .periods import month


@dataclass(frozen=True)
class Headline:
    month: str  # 2026-11
    members: int
    countries: int
    readers: int  # visitors + members, summed over the month's days
    visitors: int
    member_readers: int
    published: bool

    def as_dict(self) -> dict:
        return asdict(self)


def is_published(session: Session) -> bool:
    return bool(session.scalar(select(ReachPublication.headline).where(ReachPublication.id == 1)))


def publish(session: Session, roles, actor: audit.Actor, on: bool) -> bool:
    """Publish (or withdraw) the headline figures on the library's front page; audited. True if it changed."""
    require(roles, "reach.publish")
    row = session.get(ReachPublication, 1, with_for_update=True)
    if row is None:
        row = ReachPublication(id=1, headline=False)
        session.add(row)
    if row.headline == on:
        return False
    row.headline, row.changed_by, row.changed_at = on, actor.label, utcnow()
    audit.record(session, "reach.headline_published" if on else "reach.headline_withdrawn", "reach", actor)
    return True


def headline_figures(session: Session, month_text: str | None = None, today: date | None = None) -> Headline:
    """The figures for a month ("2026-11"; the current UTC month by default). Raises PeriodError."""
    today = today or utcnow().date()
    period = month(month_text or today.strftime("%Y-%m"))
    table, countries, unplaced = members_by_country(session)
    members = sum(row[1] for row in table.rows) + unplaced
    visitors, member_readers = session.execute(
        select(func.coalesce(func.sum(ReaderDay.visitors), 0), func.coalesce(func.sum(ReaderDay.members), 0))
        .where(ReaderDay.day >= period.start, ReaderDay.day <= period.end)).one()
    return Headline(month=period.start.strftime("%Y-%m"), members=members, countries=countries,
                    readers=int(visitors) + int(member_readers), visitors=int(visitors),
                    member_readers=int(member_readers), published=is_published(session))


def stats_for(session: Session, roles, month_text: str | None = None) -> Headline:
    """The figures for the API: staff at any time (they see the Reach page anyway)."""
    require(roles, "reach.read")
    return headline_figures(session, month_text)


def public_headline(session: Session) -> Headline | None:
    """The figures for the library's front page, or None while they are not published."""
    if not is_published(session):
        return None
    return headline_figures(session)
