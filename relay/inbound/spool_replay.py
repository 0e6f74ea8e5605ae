"""Replaying the spool (relay/infra/spool.py) into the database once it is back.

Each entry is stored as the webhook would have been (store_inbound: committed, deduplicated on the
provider's id, so a replay of something already kept is a no-op), its file removed only after
that commit, and only then handed to the workers. Several processes may replay at once: the
unique constraint keeps one event, and a file already removed is skipped.

Who replays: the web process that spooled (a background thread, until the spool is empty), any
web process that finds the spool non-empty after a webhook was stored or on /healthz (checked at
most every few seconds), and the sweeper when it runs on the same host (workers/tasks.py)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from relay.inbound.record import store_inbound
from relay.infra.dispatch import dispatch_safely
from relay.infra.spool import CorruptEntry, Spool

log = logging.getLogger(__name__)

UNREACHABLE = (OperationalError, InterfaceError)  # the database cannot be reached: spool, or wait to replay


@dataclass(frozen=True)
class ReplayReport:
    stored: int = 0
    duplicates: int = 0
    set_aside: int = 0
    left: int = 0  # entries still in the spool (the database went away again, or the limit was reached)


def replay(services, spool: Spool, limit: int | None = None) -> ReplayReport:
    """Store the spooled webhooks, oldest first; stops at the first sign the database is still down."""
    stored = duplicates = set_aside = 0
    set_aside += spool.set_aside_stale_temporaries()
    entries = spool.entries()
    for index, path in enumerate(entries):
        if limit is not None and index >= limit:
            return ReplayReport(stored, duplicates, set_aside, len(entries) - index)
        try:
            entry = spool.read(path)
        except FileNotFoundError:  # another process replayed it
            continue
        except CorruptEntry as exc:
            spool.set_aside(path, str(exc))
            set_aside += 1
            continue
        try:
            recorded = store_inbound(services.engine, **entry.fields())
        except UNREACHABLE as exc:
            log.info("spool: database still unavailable, %d entries wait: %s", len(entries) - index,
                     str(exc).splitlines()[0])
            return ReplayReport(stored, duplicates, set_aside, len(entries) - index)
        except DBAPIError as exc:  # the database refuses this entry itself: it would refuse it forever
            spool.set_aside(path, f"the database refused it: {str(exc).splitlines()[0]}")
            set_aside += 1
            continue
        spool.remove(path)  # only after the commit
        if recorded.created:
            stored += 1
            dispatch_safely(services.dispatcher.inbound_received, recorded.event_id, entry.kind)
        else:
            duplicates += 1
    if stored or duplicates or set_aside:
        log.warning("spool: replayed %d webhooks (%d already kept, %d set aside)", stored + duplicates, duplicates,
                    set_aside)
    return ReplayReport(stored, duplicates, set_aside, 0)


def replay_spool(services) -> ReplayReport:
    """The sweeper's call: replay this host's spool, if there is anything in it."""
    if services.spool is None or not services.spool.entries():
        return ReplayReport()
    try:
        return replay(services, services.spool)
    except OSError as exc:  # the spool's disk: logged, and never in the way of the rest of the sweep
        log.error("spool: replay of %s failed: %s: %s", services.spool.directory, type(exc).__name__, exc)
        return ReplayReport()


class Replayer:
    """A web process's replay: a daemon thread that retries every `interval` seconds until the
    spool is empty, started when this process spools or finds the spool non-empty."""

    def __init__(self, services, spool: Spool, interval: float = 5.0):
        self.services = services
        self.spool = spool
        self.interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_look = 0.0

    def poke(self) -> None:
        """Cheap enough for every stored webhook: looks at the directory at most once per interval."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + self.interval
        if self.spool.entries():
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="relay-spool-replay", daemon=True)
            self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait for a running replay to finish; True when none runs (any more)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = replay(self.services, self.spool, limit=500)
            except Exception:  # a disk error, a bug: logged, tried again later, never kills the web
                log.exception("spool: replay failed")
                report = ReplayReport(left=1)
            if report.left == 0:
                with self._lock:  # an entry spooled while this thread decides to end gets a new thread
                    if not self.spool.entries():
                        self._thread = None
                        return
            if report.left and report.stored + report.duplicates:  # more than one batch: go on at once
                continue
            self._stop.wait(self.interval)
