"""The period a Reach page shows: the last 30 days (the default), the last 12 months, or custom dates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from relay.model.translatable import N_, Translatable

PERIODS = ("30d", "12m", "custom")
MAX_DAYS = 731  # two years: a longer custom period is refused with a message rather than slowly drawn


class PeriodError(Translatable, ValueError):
    """A period the page cannot show; the message (a catalogue id and its values) says what to send instead,
    in the reader's language on the Reach pages; `str()` is the English (`relay stats --month`)."""


@dataclass(frozen=True)
class Period:
    key: str
    start: date  # first day, UTC
    end: date  # last day, inclusive

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def as_args(self) -> dict[str, str]:
        if self.key == "custom":
            return {"period": "custom", "from": self.start.isoformat(), "to": self.end.isoformat()}
        return {"period": self.key}


def last_days(today: date, days: int, key: str) -> Period:
    return Period(key, today - timedelta(days=days - 1), today)


def month(text: str) -> Period:
    """A calendar month, "2026-11"."""
    try:
        year, number = (int(part) for part in text.split("-"))
        start = date(year, number, 1)
    except ValueError:
        raise PeriodError(N_("%(value)s is not a month: write it as YYYY-MM, e.g. 2026-11"), value=repr(text)) from None
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period("custom", start, following - timedelta(days=1))


def parse_period(args: Mapping[str, str], today: date) -> Period:
    key = (args.get("period") or "30d").strip()
    if key == "30d":
        return last_days(today, 30, key)
    if key == "12m":
        return last_days(today, 365, key)
    if key != "custom":
        raise PeriodError(N_("unknown period %(value)s: choose 30d, 12m or custom (with from and to)"), value=repr(key))
    try:
        start = date.fromisoformat((args.get("from") or "").strip())
        end = date.fromisoformat((args.get("to") or "").strip())
    except ValueError:
        raise PeriodError(N_("a custom period needs from and to as dates, YYYY-MM-DD")) from None
    if start > end:
        raise PeriodError(N_("the period starts (%(start)s) after it ends (%(end)s): swap from and to"),
                          start=start.isoformat(), end=end.isoformat())
    if (end - start).days + 1 > MAX_DAYS:
        raise PeriodError(N_("a period may cover at most %(days)s days; choose a shorter one"), days=MAX_DAYS)
    return Period(key, start, end)
