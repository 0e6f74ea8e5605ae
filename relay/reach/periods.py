"""The period a Reach page shows: the last 30 days (the default), the last 12 months, or custom dates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

PERIODS = ("30d", "12m", "custom")
MAX_DAYS = 731  # two years: a longer custom period is refused with a message rather than slowly drawn


class PeriodError(ValueError):
    """A period the page cannot show; the message says what to send instead."""


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
        raise PeriodError(f"{text!r} is not a month: write it as YYYY-MM, e.g. 2026-11") from None
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period("custom", start, following - timedelta(days=1))


def parse_period(args: Mapping[str, str], today: date) -> Period:
    key = (args.get("period") or "30d").strip()
    if key == "30d":
        return last_days(today, 30, key)
    if key == "12m":
        return last_days(today, 365, key)
    if key != "custom":
        raise PeriodError(f"unknown period {key!r}: choose 30d, 12m or custom (with from and to)")
    try:
        start = date.fromisoformat((args.get("from") or "").strip())
        end = date.fromisoformat((args.get("to") or "").strip())
    except ValueError:
        raise PeriodError("a custom period needs from and to as dates, YYYY-MM-DD") from None
    if start > end:
        raise PeriodError(f"the period starts ({start}) after it ends ({end}): swap from and to")
    if (end - start).days + 1 > MAX_DAYS:
        raise PeriodError(f"a period may cover at most {MAX_DAYS} days; choose a shorter one")
    return Period(key, start, end)
