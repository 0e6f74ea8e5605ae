"""Planner statistics that keep up with a burst (issue 18, item 4; docs/scale.md, "Issue 18's runs").

PostgreSQL plans from the statistics autovacuum refreshes (about once a minute at best), and a backend keeps some
plans until those statistics change: its foreign-key checks, and the generic plans of prepared statements. A
table that grows several times over within that minute, as a new network's first burst of replies grows posts,
deliveries and inbound events, is then read whole where an index lookup would do: in the bench's inbound
workload the relays' foreign-key check on posts, planned while posts was empty, took 110-170 us a row, ~800 rows
a batch, against ~8 us for the checks on tables that had statistics.

So the drain asks, at most every CHECK_EVERY seconds per process, whether a table it writes has changed by as
many rows as it held when it was last analyzed (and by at least MINIMUM), and analyzes those: that refreshes their
statistics and makes every backend plan them again. The share keeps a table of history (a running network's)
from being analyzed for an ordinary day; a table that doubles is analyzed about once per doubling. One process
analyzes at a time (an advisory lock); tables relay's database user does not own are left to autovacuum, and a
database that refuses is told once in the log.

Hand-written: PostgreSQL has no per-table setting that reacts within seconds (autovacuum_naptime is the server's),
and no library does this."""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import text

log = logging.getLogger(__name__)

TABLES = ("posts", "deliveries", "inbound_events", "participants")  # what a drained batch writes and reads
MINIMUM = 1000  # changes since the last analyze below which a table is left to autovacuum
SHARE = 1.0  # ... and changes as a share of the rows it holds
CHECK_EVERY = 2.0  # seconds, per process
LOCK_KEY = 0x72656C6179  # pg_try_advisory_lock: one process analyzes at a time ("relay")
INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for a refusal (its message may be in the server's language)

# pg_class.reltuples: the rows the table held at its last analyze (or vacuum); -1 when it never had one. Only the
# tables relay's database user may analyze (their owner's role, or a superuser): PostgreSQL skips any other with
# a warning, not an error, so asking would only log "analyzed" every few seconds and change nothing.
_STALE = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.relname = ANY(:tables) AND s.schemaname = current_schema() AND s.n_mod_since_analyze >= :minimum"
    " AND s.n_mod_since_analyze >= :share * GREATEST(c.reltuples, 0) AND pg_has_role(c.relowner, 'USAGE')"
    " ORDER BY s.relname")


class Refresher:
    """Per process: when it last looked, and whether analyzing is allowed at all."""

    def __init__(self, tables=TABLES, check_every: float = CHECK_EVERY, clock=time.monotonic):
        self.tables, self.check_every, self.clock = list(tables), check_every, clock
        self._last: float | None = None
        self._lock = threading.Lock()
        self.refused = False  # the database said no once: not asked again

    def refresh(self, engine) -> list[str]:
        """Analyze the tables that outgrew their statistics, if it is time to look; the tables analyzed."""
        if engine.dialect.name != "postgresql" or self.refused:
            return []
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.check_every:
                return []
            self._last = now
        try:
            return self._analyze(engine)
        except Exception as exc:  # statistics are an optimisation: never fail the caller's work for them
            if getattr(getattr(exc, "orig", exc), "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
                self.refused = True
                log.warning("cannot analyze %s (%s); leaving their statistics to autovacuum", ", ".join(self.tables),
                            exc)
            else:
                log.warning("refreshing statistics: %s: %s", type(exc).__name__, exc)
            return []

    def _analyze(self, engine) -> list[str]:
        with engine.connect() as conn:
            stale = list(conn.scalars(_STALE, {"tables": self.tables, "minimum": MINIMUM, "share": SHARE}))
            if not stale:
                conn.rollback()
                return []
            if not conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}):
                conn.rollback()  # another process is analyzing now
                return []
            for table in stale:  # names from TABLES only (the query filters on them), quoted anyway
                conn.execute(text(f'ANALYZE "{table}"'))
            conn.commit()
        log.info("analyzed %s: changed by as many rows as they held at their last statistics", ", ".join(stale))
        return stale


REFRESHER = Refresher()


def refresh_statistics(engine) -> list[str]:
    """The process's Refresher.refresh (relay/inbound/drain.py calls it after each claimed batch)."""
    return REFRESHER.refresh(engine)
