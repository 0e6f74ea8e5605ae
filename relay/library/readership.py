"""Library readers counted without tracking anyone (issue 20; docs/reach.md, docs/privacy.md).

A library page carries a tiny image; loading it counts the reader once per UTC day:

- a signed-out reader is the keyed hash HMAC-SHA256(salt of the day, day | client address | user agent).
  The salt is 32 random bytes made for that day and kept only in Redis (or this process's memory when
  relay runs without Redis, or while Redis cannot be reached), set to expire at the end of the day, and
  deleted by the sweeper once the day is over. The hashes live beside it, under the same expiry. With
  the salt gone no one, relay included, can tell whether yesterday's reader is today's: a visitor is
  never followed across days, and no address is ever written anywhere;
- a signed-in member is counted as a member (the same daily hash, of their id), not as a visitor;
- bots are left out twice: by user agent (crawlerdetect's list, and an empty one), and because a client
  that does not load the page's image is never counted at all.

Only the day's two counts reach the database (`reach_readers`), incremented when a hash is first seen.
A month's readers are the sum of its days (a reader who comes back on three days counts three times),
the estimate privacy-first analytics make. Views per case and day (`reach_case_views`) are counted
when the page is served, bots by user agent left out, beside the lifetime `cases.views`.

Written by hand on the standard library's hmac and secrets: the scheme is a few lines, and the
analytics packages that do this are whole servers, not libraries."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from time import monotonic
from typing import Protocol

from crawlerdetect import CrawlerDetect
from sqlalchemy.orm import Session

from relay.infra.counters import increment
from relay.model.tables import CaseDayViews, ReaderDay, utcnow

log = logging.getLogger(__name__)

VISITORS, MEMBERS = "visitors", "members"
KEEP_DAYS_TO_FORGET = 7  # the sweeper deletes what is left of the last week's days (expiry does it anyway)
_detector = CrawlerDetect()


@lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    """A crawler, a script or no user agent at all."""
    agent = (user_agent or "").strip()
    return not agent or bool(_detector.isCrawler(agent[:1000]))


def end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)


class DayStore(Protocol):
    """Where a day's salt and hashes live (Redis or memory), never the database."""

    def salt(self, day: date) -> bytes: ...

    def add(self, day: date, kind: str, digest: bytes) -> bool:
        """True when `digest` was not yet seen that day."""

    def forget_before(self, day: date) -> None:
        """Destroy the salts and hashes of the days before `day`."""


class MemoryDayStore:
    """One process's memory: with several web processes a reader may be counted once by each."""

    def __init__(self):
        self._lock = threading.Lock()
        self._salts: dict[date, bytes] = {}
        self._seen: dict[tuple[date, str], set[bytes]] = {}

    def salt(self, day: date) -> bytes:
        with self._lock:
            self._forget_before_locked(day)  # a new day: the days before it are over
            return self._salts.setdefault(day, secrets.token_bytes(32))

    def add(self, day: date, kind: str, digest: bytes) -> bool:
        with self._lock:
            seen = self._seen.setdefault((day, kind), set())
            if digest in seen:
                return False
            seen.add(digest)
            return True

    def forget_before(self, day: date) -> None:
        with self._lock:
            self._forget_before_locked(day)

    def _forget_before_locked(self, day: date) -> None:
        for old in [d for d in self._salts if d < day]:
            del self._salts[old]
        for key in [k for k in self._seen if k[0] < day]:
            del self._seen[key]


class RedisDayStore:
    """Shared by every web process: the salt is SET NX (the first process makes it) and, like the day's
    sets of hashes, expires at the end of the day (EXPIREAT)."""

    def __init__(self, client, prefix: str = ""):
        self.client, self.prefix = client, prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "") -> "RedisDayStore":
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # a page image must not wait on a lost Redis: no retries, the fallback answers at once
        return cls(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                        retry=Retry(NoBackoff(), 0)), prefix)

    def key(self, day: date, part: str) -> str:
        return f"{self.prefix}relay:reach:{day.isoformat()}:{part}"

    def salt(self, day: date) -> bytes:
        key, expires = self.key(day, "salt"), int(end_of_day(day).timestamp())
        self.client.set(key, secrets.token_bytes(32), nx=True, exat=expires)
        value = self.client.get(key)
        if value is None:  # the day ended between the two commands
            raise RuntimeError("the day's salt expired while it was read")
        return value

    def add(self, day: date, kind: str, digest: bytes) -> bool:
        key = self.key(day, kind)
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(key, digest)
        pipe.expireat(key, int(end_of_day(day).timestamp()))
        added, _ = pipe.execute()
        return bool(added)

    def forget_before(self, day: date) -> None:
        old = [day - timedelta(days=n) for n in range(1, KEEP_DAYS_TO_FORGET + 1)]
        self.client.delete(*[self.key(d, part) for d in old for part in ("salt", VISITORS, MEMBERS)])


class FallbackDayStore:
    """Redis, or this process's memory while Redis cannot be reached (logged): a library page never
    fails because of the reader count; a reader may then be counted once more that day."""

    RETRY_AFTER_SECONDS = 30.0  # after a failure Redis is not asked again for this long

    def __init__(self, primary: DayStore, fallback: DayStore | None = None, clock=monotonic):
        self.primary, self.fallback = primary, fallback or MemoryDayStore()
        self.clock, self._down_until = clock, float("-inf")

    def _call(self, name: str, *args):
        if self.clock() >= self._down_until:
            try:
                return getattr(self.primary, name)(*args)
            except Exception as exc:  # a Redis outage: count in memory rather than not at all
                self._down_until = self.clock() + self.RETRY_AFTER_SECONDS
                log.warning("reader count: Redis unavailable (%s); counting in this process's memory for %s s",
                            exc, self.RETRY_AFTER_SECONDS)
        return getattr(self.fallback, name)(*args)

    def salt(self, day: date) -> bytes:
        return self._call("salt", day)

    def add(self, day: date, kind: str, digest: bytes) -> bool:
        return self._call("add", day, kind, digest)

    def forget_before(self, day: date) -> None:
        self._call("forget_before", day)
        self.fallback.forget_before(day)


def day_store_for(settings) -> DayStore:
    """Redis when relay's broker is Redis (every web process shares the counts), else memory."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return FallbackDayStore(RedisDayStore.from_url(settings.broker_url, settings.broker_prefix))
    return MemoryDayStore()


def reader_digest(salt: bytes, day: date, address: str, user_agent: str) -> bytes:
    return hmac.new(salt, f"{day.isoformat()}|{address}|{user_agent}".encode(), hashlib.sha256).digest()


def member_digest(salt: bytes, day: date, member_id: int) -> bytes:
    return hmac.new(salt, f"{day.isoformat()}|member|{member_id}".encode(), hashlib.sha256).digest()


def count_reader(session: Session, store: DayStore, *, address: str, user_agent: str,
                 member_id: int | None = None, now: datetime | None = None) -> str:
    """Count one loaded page image; returns what it was: "bot", "seen" (already counted today),
    "visitors" or "members"."""
    if is_bot(user_agent):
        return "bot"
    day = (now or utcnow()).astimezone(timezone.utc).date()
    salt = store.salt(day)
    if member_id is not None:
        kind, digest = MEMBERS, member_digest(salt, day, member_id)
    else:
        kind, digest = VISITORS, reader_digest(salt, day, address or "", user_agent)
    if not store.add(day, kind, digest):
        return "seen"
    increment(session, ReaderDay.__table__, {"day": day}, kind)
    return kind


def count_case_day_view(session: Session, case_id: int, user_agent: str | None, now: datetime | None = None) -> bool:
    """One view of a case page on today's row; False (not counted) for a bot."""
    if is_bot(user_agent):
        return False
    day = (now or utcnow()).astimezone(timezone.utc).date()
    increment(session, CaseDayViews.__table__, {"case_id": case_id, "day": day}, "views")
    return True
