"""The driver connection each process keeps for the webhook insert (relay/infra/db.driver_autocommit):
kept across statements outside SQLAlchemy's pool, its own in each forked process (never the parent's,
and the parent's left working), opened again after PostgreSQL drops it, closed by engine.dispose();
and a statement on it is committed when it returns (a webhook is durable before its 200)."""
from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from relay.inbound.record import store_inbound
from relay.infra.db import driver_autocommit, make_engine


def _backend(engine) -> int:
    with driver_autocommit(engine) as driver:
        return driver.execute("SELECT pg_backend_pid()").fetchone()[0]


def _alive(url: str, pid: int) -> bool:
    admin = create_engine(url)
    with admin.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
    admin.dispose()
    return bool(found)


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


@pytest.fixture
def engine(postgres_only_url):
    engine = make_engine(postgres_only_url, pool_pre_ping=False)
    yield engine
    engine.dispose()


def test_the_connection_is_kept_outside_the_pool_and_closed_by_dispose(engine, postgres_only_url):
    first = _backend(engine)
    assert _backend(engine) == first  # kept: no new connection, no checkout
    assert engine.pool.checkedout() == 0
    with engine.connect() as conn:  # the pool's own connections are others
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != first
    engine.dispose()
    assert not _alive(postgres_only_url, first)
    second = _backend(engine)  # used again after dispose: a new one
    assert second != first


def test_a_stored_webhook_is_committed_when_store_returns(engine, postgres_only_url):
    recorded = store_inbound(engine, provider="twilio", kind="sms", dedupe_key="SM-durable", raw="Body=x",
                             sender="+15551230000")
    reader = create_engine(postgres_only_url)  # another session sees it at once: committed, not pending
    with reader.connect() as conn:
        found = conn.execute(text("SELECT dedupe_key FROM inbound_events WHERE id = :id"),
                             {"id": recorded.event_id}).scalar()
        # and nothing of ours is left in a transaction (autocommit: the commit was the statement's own)
        open_transactions = conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%'")).scalar()
    reader.dispose()
    assert found == "SM-durable" and open_transactions == 0


def test_a_connection_postgres_dropped_is_a_dbapi_error_then_a_new_one_is_opened(engine, postgres_only_url):
    kept = _backend(engine)
    _terminate(postgres_only_url, kept)

    with pytest.raises(DBAPIError) as lost:
        _backend(engine)
    assert lost.value.connection_invalidated

    again = _backend(engine)  # the next webhook: a new connection
    assert again != kept
    recorded = store_inbound(engine, provider="twilio", kind="sms", dedupe_key="SM-after", raw="Body=x", sender="")
    assert recorded.created


def test_a_forked_process_opens_its_own_and_leaves_the_parents_working(engine, postgres_only_url):
    parent = _backend(engine)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            mine = _backend(engine)
            os.write(write, str(mine).encode())
            engine.dispose()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    reported = os.read(read, 100)
    os.close(read)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert int(reported) != parent  # the child's own connection
    assert _backend(engine) == parent  # the parent's was neither used nor closed by the child
    assert _alive(postgres_only_url, parent)


def test_each_thread_keeps_its_own(engine):
    mine = _backend(engine)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(_backend(engine)))
    thread.start()
    thread.join()
    assert theirs and theirs[0] != mine
    assert _backend(engine) == mine
