"""Database engine and sessions, built per process (never at import time)."""
from __future__ import annotations

import atexit
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

CONNECT_TIMEOUT_SECONDS = 5


def _unicode_lower(value):
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, enforced foreign keys and relay_lower(), a
    lower() that folds all of Unicode as PostgreSQL's does (SQLite's own folds ASCII only)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            dbapi_conn.create_function("relay_lower", 1, _unicode_lower, deterministic=True)

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if url.startswith("postgresql"):
        connect_args = dict(kwargs.get("connect_args", {}))
        if "connect_timeout" not in url:
            # psycopg waits 130 s by default for a server that accepts and says nothing: past Twilio's
            # 15 s for a webhook, which relay would rather spool (relay/infra/spool.py). ?connect_timeout=N overrides.
            connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        # Every session speaks UTC, whatever the server's or the database's zone: psycopg then hands back
        # timestamps in timezone.utc, which UTCDateTime passes through (relay/model/tables.py). Appended to any
        # ?options= of the URL (connect_args would replace it).
        options = connect_args.get("options", make_url(url).query.get("options", ""))
        connect_args["options"] = f"{options} -c TimeZone=UTC".strip()
        kwargs["connect_args"] = connect_args
    return create_engine(url, **kwargs)


def is_transient(exc: BaseException) -> bool:
    """A database error that says nothing about the work being done: the server went away, restarted,
    refused a connection, or the connection was invalidated. Retried without counting against an event."""
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session:
        with session.begin():
            yield session


class _Kept:
    """The kept driver connections of one engine in this process: one per thread, each a pool connection
    detached from the pool (so opened by the engine's own creator and connect events), in autocommit."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.generation = 0  # engine.dispose() moves it on: older connections are closed, not reused
        self.idle: dict[int, _Connection] = {}  # id -> connection, those no thread is using

    def close_idle(self) -> None:
        with self.lock:
            self.generation += 1
            idle, self.idle = self.idle, {}
        for kept in idle.values():
            _close_quietly(kept)


_KEPT: weakref.WeakKeyDictionary[Engine, _Kept] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class _Connection:
    dbapi: Any  # what SQLAlchemy's dialect sees (is_disconnect)
    driver: Any  # the psycopg connection itself
    generation: int


def _close_quietly(kept: _Connection) -> None:
    try:
        kept.driver.close()
    except Exception:  # noqa: BLE001 - already broken; nothing to give back
        pass


_KEPT_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    global _KEPT_LOCK  # a lock another thread held at the fork would stay held in the child
    _KEPT_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _kept_of(engine: Engine) -> _Kept:
    kept = _KEPT.get(engine)
    if kept is not None and kept.pid == os.getpid():
        return kept
    with _KEPT_LOCK:  # two threads' first webhooks: one set of kept connections
        return _new_kept(engine)


def _new_kept(engine: Engine) -> _Kept:
    kept = _KEPT.get(engine)
    if kept is None or kept.pid != os.getpid():
        # First use in this process, or a forked child: the parent's connections stay the parent's. They are
        # dropped here without closing (psycopg does not end, on garbage collection, a connection another
        # process opened), and this process opens its own.
        kept = _KEPT[engine] = _Kept()
        if not event.contains(engine, "engine_disposed", _on_dispose):
            event.listen(engine, "engine_disposed", _on_dispose)
    return kept


def _on_dispose(engine: Engine) -> None:
    kept = _KEPT.get(engine)
    if kept is not None and kept.pid == os.getpid():
        kept.close_idle()


@atexit.register
def _close_all_kept() -> None:
    """A process that ends closes its kept connections (the server sees a clean goodbye, not a reset)."""
    for kept in list(_KEPT.values()):
        if kept.pid == os.getpid():
            kept.close_idle()


@contextmanager
def driver_autocommit(engine: Engine) -> Iterator:
    """A driver connection kept by this thread for `engine`, in autocommit, for a hot statement that
    SQLAlchemy's execution layer would double in CPU (the webhook insert: relay/inbound/record.py);
    kept outside the pool, it also skips the pool's checkout, reset and the autocommit switching
    (~7 % of a webhook, docs/scale.md).

    Its lifecycle: opened on first use in a process (so after gunicorn's fork, never inherited), opened
    again after it is lost, closed by engine.dispose() and at exit. Errors come out as SQLAlchemy's
    DBAPIError, as from any other statement (the web app turns them into 503); a lost connection is
    treated as SQLAlchemy treats one: it is discarded, and so is the pool's, which a database restart has
    made stale as well. A statement in autocommit is committed (and durable) when execute returns."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    kept = _kept_of(engine)
    connection = _checkout(engine, kept, dbapi_error)
    driver = connection.driver
    lost = False
    try:
        yield driver
    except dbapi_error as exc:
        lost = bool(engine.dialect.is_disconnect(exc, connection.dbapi, None) or driver.closed)
        raise DBAPIError.instance(None, None, exc, dbapi_error, connection_invalidated=lost) from exc
    finally:
        healthy = not lost and not driver.closed and _idle(driver)
        with kept.lock:
            keep = healthy and connection.generation == kept.generation
            if keep:
                kept.idle[id(connection)] = connection
            else:
                kept.local.connection = None
        if not keep:
            _close_quietly(connection)
        if lost:
            engine.dispose(close=False)


def _idle(driver) -> bool:
    """No transaction left open on the connection (in autocommit there never is one; if there were, it is
    not reused)."""
    status = getattr(getattr(driver, "info", None), "transaction_status", None)
    return status is None or status == 0  # psycopg's TransactionStatus.IDLE


def _checkout(engine: Engine, kept: _Kept, dbapi_error) -> _Connection:
    """This thread's kept connection, taken out of the idle set; a new one if there is none or it is closed.
    A new one is a pool connection detached from the pool: opened by the engine's own creator and connect
    events (connect_timeout, the dialect's set-up), then ours, never reset or handed to anyone else."""
    with kept.lock:
        connection = getattr(kept.local, "connection", None)
        if connection is not None:
            kept.idle.pop(id(connection), None)
    if connection is not None and not connection.driver.closed:
        return connection
    try:
        fairy = engine.raw_connection()
        dbapi, driver = fairy.dbapi_connection, fairy.driver_connection
        fairy.detach()
        if driver is None:  # a checkout always has one; None only after invalidation
            raise dbapi_error("no driver connection")
        driver.autocommit = True
    except dbapi_error as exc:  # the database is unreachable
        raise DBAPIError.instance(None, None, exc, dbapi_error) from exc
    with kept.lock:
        connection = kept.local.connection = _Connection(dbapi, driver, kept.generation)
    return connection
