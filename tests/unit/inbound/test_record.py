"""Storing a webhook at the edge (relay/inbound.store_inbound): one autocommit statement, durable
when it returns, deduplicated by the unique key, on SQLite and on PostgreSQL (where it goes straight
to the driver, relay/db.driver_autocommit), and a connection lost under it is answered as SQLAlchemy
would: a DBAPIError (the web app's 503) and a pool that works again on the next webhook."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from relay.inbound.record import store_inbound
from relay.infra.db import make_engine
from relay.model.tables import InboundEvent


def _store(engine, key: str, **extra):
    return store_inbound(engine, provider="twilio", kind="sms", dedupe_key=key, raw=f"Body={key}",
                         sender="+821012345678", **extra)


def test_stored_row_is_committed_and_a_repeat_is_the_same_event(database_url):
    engine = make_engine(database_url, pool_pre_ping=False)
    first = _store(engine, "SM1", payload=b"\x00\xffbytes", content_type="text/plain")
    again = _store(engine, "SM1")
    other = _store(engine, "SM2")
    engine.dispose()

    assert first.created and not again.created and other.created
    assert again.event_id == first.event_id != other.event_id
    reader = create_engine(database_url)  # another connection sees it: it was committed
    with reader.connect() as conn:
        row = conn.execute(select(InboundEvent).where(InboundEvent.id == first.event_id)).one()
    reader.dispose()
    assert (row.raw, row.sender, row.outcome, row.attempts) == ("Body=SM1", "+821012345678", "received", 0)
    assert (row.payload, row.content_type, row.rules_fired, row.detail) == (b"\x00\xffbytes", "text/plain", [], "")
    assert row.received_at is not None and row.processed_at is None and row.dispatched_at is None


def test_a_connection_lost_under_the_insert_is_a_dbapi_error_then_the_pool_recovers(postgres_only_url):
    engine = make_engine(postgres_only_url, pool_pre_ping=False, pool_size=2)
    _store(engine, "SM-before")  # the process now holds a connection (kept for the insert: relay/infra/db.py)
    admin = create_engine(postgres_only_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # every connection to the database but this one: the insert's among them
        assert conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()

    with pytest.raises(DBAPIError) as lost:
        _store(engine, "SM-during")
    assert lost.value.connection_invalidated

    recorded = _store(engine, "SM-during")  # the provider's retry: a fresh connection takes it
    assert recorded.created
    with engine.connect() as conn:
        keys = conn.execute(select(InboundEvent.dedupe_key).order_by(InboundEvent.id)).scalars().all()
    engine.dispose()
    assert keys == ["SM-before", "SM-during"]


def test_an_unreachable_database_is_a_dbapi_error():
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    with pytest.raises(DBAPIError):
        _store(engine, "SM1")
