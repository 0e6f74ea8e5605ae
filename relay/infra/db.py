"""Database engine and sessions, built per process (never at import time)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
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
    if url.startswith("postgresql") and "connect_timeout" not in url:
        # psycopg waits 130 s by default for a server that accepts and says nothing: past Twilio's
        # 15 s for a webhook, which relay would rather spool (relay/infra/spool.py). ?connect_timeout=N overrides.
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **kwargs.get("connect_args", {})}
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


@contextmanager
def driver_autocommit(engine: Engine) -> Iterator:
    """The pooled driver connection itself, in autocommit, for a hot statement that SQLAlchemy's
    execution layer would double in CPU (the webhook insert: relay/inbound/record.py).

    Errors come out as SQLAlchemy's DBAPIError, as from any other statement (the web app turns
    them into 503), and a lost connection is treated as SQLAlchemy treats one: it is discarded,
    and so is the rest of the pool, which a database restart has made stale as well."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        fairy = engine.raw_connection()
    except dbapi_error as exc:  # the database is unreachable
        raise DBAPIError.instance(None, None, exc, dbapi_error) from exc
    driver = fairy.driver_connection
    if driver is None:  # a pool checkout always has one; None only after invalidation
        raise DBAPIError.instance(None, None, dbapi_error("no driver connection"), dbapi_error)
    lost = False
    try:
        driver.autocommit = True
        yield driver
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, fairy.dbapi_connection, None) or driver.closed
        if lost:
            fairy.invalidate(exc)
        raise DBAPIError.instance(None, None, exc, dbapi_error, connection_invalidated=lost) from exc
    finally:
        if not lost:
            try:
                driver.autocommit = False
            except dbapi_error as exc:  # broken in a way the statement did not show: do not pool it
                lost = True
                fairy.invalidate(exc)
        fairy.close()
        if lost:
            engine.dispose(close=False)
