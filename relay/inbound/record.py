"""Recording inbound webhooks at the edge: persist the raw request before it is acknowledged,
deduplicated by a unique constraint on (provider, kind, provider id)."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from relay.infra.db import driver_autocommit, is_transient, transaction
from relay.infra.storage import insert_if_new
from relay.model.tables import InboundEvent, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    event_id: int
    created: bool  # False: a retry or replay of something we already hold


def _row(*, provider: str, kind: str, dedupe_key: str, raw: str, sender: str = "", payload: bytes | None = None,
         content_type: str = "", received_at: datetime | None = None) -> dict:
    """received_at: when the webhook came in, if earlier than now (one replayed from relay/infra/spool.py)."""
    return {"provider": provider, "kind": kind, "dedupe_key": dedupe_key, "raw": raw, "sender": sender[:320],
            "outcome": "received", "attempts": 0, "payload": payload, "content_type": content_type[:200],
            "rules_fired": [], "detail": "", "last_error": "", "received_at": received_at or utcnow(),
            "guard_verdict": "", "guard_kinds": []}  # issue 16: set when the message is processed


def _existing(session: Session | Connection, row: dict) -> Recorded:
    existing = session.scalar(select(InboundEvent.id).where(
        InboundEvent.provider == row["provider"], InboundEvent.kind == row["kind"],
        InboundEvent.dedupe_key == row["dedupe_key"]))
    # The insert conflicted on this key, so the row is committed, and inbound events are never deleted.
    assert existing is not None
    return Recorded(existing, False)


def record_inbound(session: Session | Connection, **fields) -> Recorded:
    """Insert the event unless it exists; a conflict means "acknowledge and do nothing"."""
    row = _row(**fields)
    new_id = insert_if_new(session, InboundEvent.__table__, row)
    return Recorded(new_id, True) if new_id is not None else _existing(session, row)


def _postgres_insert(engine: Engine) -> str:
    """The INSERT ... ON CONFLICT DO NOTHING RETURNING id of record_inbound, compiled once by
    SQLAlchemy for the driver (named %(column)s parameters)."""
    columns = list(_row(provider="", kind="", dedupe_key="", raw=""))
    stmt = (postgresql.insert(InboundEvent.__table__).values({name: bindparam(name) for name in columns})  # type: ignore[arg-type]  # a model's __table__ is typed FromClause; it is the Table
            .on_conflict_do_nothing().returning(InboundEvent.id))
    return str(stmt.compile(dialect=engine.dialect))


_POSTGRES_INSERT: dict[str, str] = {}


def store_inbound(engine: Engine, **fields) -> Recorded:
    """record_inbound as a statement of its own (autocommit): at the webhook edge the insert is the
    whole transaction, so storing costs one round trip instead of BEGIN, INSERT and COMMIT. It is
    durable when this returns, before the webhook is acknowledged.

    On PostgreSQL the statement goes straight to the driver (half the CPU of SQLAlchemy's
    execution layer, measured in docs/scale.md); a duplicate, rare, takes the ordinary path."""
    if engine.dialect.name != "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return record_inbound(connection, **fields)
    sql = _POSTGRES_INSERT.get(engine.dialect.driver) or _POSTGRES_INSERT.setdefault(
        engine.dialect.driver, _postgres_insert(engine))
    row = _row(**fields)
    with driver_autocommit(engine) as driver:
        found = driver.execute(sql, {**row, "rules_fired": json.dumps(row["rules_fired"])}).fetchone()
    if found is not None:
        return Recorded(found[0], True)
    with engine.connect() as connection:
        return _existing(connection, row)


def count_attempt(services, event_id: int) -> None:
    """Note that a worker started on the event, in its own transaction, so an event that crashes
    every worker is eventually set aside by the sweeper (a crash rolls back everything else)."""
    with transaction(services.sessions) as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == event_id, InboundEvent.processed_at.is_(None))
                        .values(attempts=InboundEvent.attempts + 1).execution_options(synchronize_session=False))


@contextmanager
def attempt(services, event_id: int) -> Iterator[None]:
    """One processing attempt of a stored event. It is counted first, in its own transaction (a crash
    still counts, so a poison event is set aside after ten); an exception then either gives the attempt
    back, when it is a transient database error (relay/infra/db.py is_transient: the database blinked, the
    event is fine), or is kept as the event's last error (`relay events list`). Both are best effort:
    with the database still away they are logged and the attempt stays counted."""
    count_attempt(services, event_id)
    try:
        yield
    except Exception as exc:
        transient = is_transient(exc)
        try:
            with transaction(services.sessions) as session:
                pending = (InboundEvent.id == event_id, InboundEvent.processed_at.is_(None))
                values = ({"attempts": InboundEvent.attempts - 1} if transient
                          else {"last_error": f"{type(exc).__name__}: {exc}"[:1000]})
                session.execute(update(InboundEvent).where(*pending).values(**values)
                                .execution_options(synchronize_session=False))
        except Exception as again:
            log.warning("inbound %s: could not %s (%s: %s)", event_id,
                        "give back the attempt" if transient else "record the error", type(again).__name__, again)
        raise
