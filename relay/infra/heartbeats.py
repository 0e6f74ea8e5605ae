"""When periodic work last ran, kept in the database (table heartbeats), and the watch that says so
when the sweeper has stopped.

The sweeper (relay/sweeper.py) is what re-queues work lost with a broker outage or a killed worker;
it runs only where beat runs (`relay beat`, `relay worker --beat`, `relay up`). A deployment that
forgot beat loses nothing at once but recovers from nothing either, so every `relay worker` checks
the sweeper's heartbeat and logs a warning when none has been recorded for two sweep periods."""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from relay.model.tables import Heartbeat, utcnow

log = logging.getLogger(__name__)

SWEEP = "sweep"


def mark(session: Session, name: str, at: datetime | None = None) -> None:
    """Record that `name` ran now (an upsert: two sweepers at once do not conflict)."""
    at = at or utcnow()
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = module.insert(Heartbeat).values(name=name, at=at)
    session.execute(stmt.on_conflict_do_update(index_elements=[Heartbeat.name], set_={"at": at}))


def last(session: Session, name: str) -> datetime | None:
    return session.scalar(select(Heartbeat.at).where(Heartbeat.name == name))


class SweeperWatch:
    """Called often (`tick`); every `period` seconds it reads the sweeper's heartbeat and warns when the
    newest is older than two periods (after a grace of two periods from its own start)."""

    def __init__(self, sessions: Callable[[], Session], period: float, repeat_every: float = 600.0,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow):
        self.sessions, self.period, self.repeat_every = sessions, period, repeat_every
        self.clock, self.now = clock, now
        self.started = clock()
        self._next_check = self.started + period
        self._warned_at: float | None = None

    def tick(self) -> None:
        if self.clock() >= self._next_check:
            self._next_check = self.clock() + self.period
            self.check()

    def check(self) -> str | None:
        """Log (and return) the warning if the sweeper looks absent; None when it is running."""
        try:
            with self.sessions() as session:
                seen = last(session, SWEEP)
        except Exception as exc:  # the database is down: nothing to say about the sweeper yet
            log.debug("sweeper watch: heartbeat unreadable: %s: %s", type(exc).__name__, exc)
            return None
        limit = 2 * self.period
        age = None if seen is None else (self.now() - seen).total_seconds()
        if age is not None and age <= limit:
            if self._warned_at is not None:
                log.info("the sweeper is running again (last sweep %.0f s ago)", age)
            self._warned_at = None
            return None
        if self.clock() - self.started < limit:
            return None
        if self._warned_at is not None and self.clock() - self._warned_at < self.repeat_every:
            return None
        self._warned_at = self.clock()
        since = "no sweep has ever been recorded" if seen is None else \
            f"the last sweep was {age:.0f} s ago ({seen.isoformat(timespec='seconds')})"
        message = (f"no sweeper is running: {since}, more than two sweep periods ({limit:.0f} s). Work lost with a "
                   f"broker outage or a killed worker is not re-queued until one runs: run `relay beat` once per "
                   f"deployment, or `relay worker --beat` on exactly one worker")
        log.warning(message)
        return message
