"""Recording inbound webhooks at the edge: persist the raw request before it is acknowledged,
deduplicated by a unique constraint on (provider, kind, provider id)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from .db import transaction
from .models import InboundEvent, utcnow
from .storage import insert_if_new


@dataclass(frozen=True)
class Recorded:
    event_id: int
    created: bool  # False: a retry or replay of something we already hold


def record_inbound(session: Session | Connection, *, provider: str, kind: str, dedupe_key: str, raw: str,
                   sender: str = "", payload: bytes | None = None, content_type: str = "") -> Recorded:
    """Insert the event unless it exists; a conflict means "acknowledge and do nothing"."""
    new_id = insert_if_new(session, InboundEvent.__table__, {
        "provider": provider, "kind": kind, "dedupe_key": dedupe_key, "raw": raw,
        "sender": sender[:320], "outcome": "received", "attempts": 0,
        "payload": payload, "content_type": content_type[:200], "rules_fired": [], "detail": "",
        "received_at": utcnow(),
    })
    if new_id is not None:
        return Recorded(new_id, True)
    existing = session.scalar(select(InboundEvent.id).where(
        InboundEvent.provider == provider, InboundEvent.kind == kind, InboundEvent.dedupe_key == dedupe_key))
    return Recorded(existing, False)


def store_inbound(engine: Engine, **fields) -> Recorded:
    """record_inbound as a statement of its own (autocommit): at the webhook edge the insert is the
    whole transaction, so storing costs one round trip instead of BEGIN, INSERT and COMMIT. It is
    durable when this returns, before the webhook is acknowledged."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return record_inbound(connection, **fields)


def count_attempt(services, event_id: int) -> None:
    """Note that a worker started on the event, in its own transaction, so an event that crashes
    every worker is eventually set aside by the sweeper (a crash rolls back everything else)."""
    with transaction(services.sessions) as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == event_id, InboundEvent.processed_at.is_(None))
                        .values(attempts=InboundEvent.attempts + 1).execution_options(synchronize_session=False))
