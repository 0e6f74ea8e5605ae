"""The deliveries' partial indexes (migration 0023, issue 18): the provider's message id is still unique
where there is one, on both databases; the sweeper's and the rate-limit queue's reads by status still go
through ix_deliveries_status on PostgreSQL; and a delivery the provider accepted has left that index (what
makes the record of a broadcast cheaper: its rows are not indexed by status once sent)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from relay.infra.db import make_engine
from relay.model.tables import Delivery, utcnow
from relay.outbound.deliveries import booked_soon, due_for_dispatch
from tests.helpers import captured_statements


def _row(i: int, **values) -> dict:
    now = utcnow()
    return {"dedupe_key": f"test:{i}", "purpose": "notice", "channel": "sms", "to_address": f"+1202555{i:04d}",
            "body": "x", "status": "queued", "attempts": 0, "created_at": now, "updated_at": now,
            "provider_message_id": None, **values}


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_a_provider_message_id_is_unique_where_there_is_one(engine):
    with engine.begin() as conn:
        conn.execute(insert(Delivery), [_row(1), _row(2), _row(3, provider_message_id="SM1")])  # NULLs: many
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert(Delivery), [_row(4, provider_message_id="SM1")])


def test_reads_by_status_use_the_in_flight_index_and_sent_rows_are_not_in_it(postgres_only_url):
    engine = make_engine(postgres_only_url)
    old = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(insert(Delivery), [_row(i, status="accepted", provider_message_id=f"SM{i}", created_at=old)
                                        for i in range(2000)]
                     + [_row(5000 + i, created_at=old) for i in range(5)])
        conn.execute(text("ANALYZE deliveries"))

    def read(session):
        assert len(due_for_dispatch(session, timedelta(minutes=5))) == 5
        booked_soon(session, timedelta(minutes=2))

    statements = captured_statements(engine, read)
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            assert "ix_deliveries_status" in plan, plan
        # the index holds the five waiting rows, not the 2,000 sent ones
        indexed = conn.execute(text(
            "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'sending')")).scalar()
        assert indexed == 5
        definition = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_status'")).scalar()
        assert "WHERE" in definition and "queued" in definition and "sending" in definition
    engine.dispose()
