"""The inbound limits (relay/inbound/limits.py) read a sender's recent events through an index
(ix_inbound_sender_time, migration 0022), per event and per batch: on PostgreSQL, no query of theirs scans
inbound_events (EXPLAIN with sequential scans disabled: each read is an index range on the sender or the time, not a whole
table or a whole index read and filtered). Without
the index each reply's flood and repeat checks read every stored SMS (issue 18)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select, text

from relay.inbound import limits
from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import InboundEvent
from relay.services import build_services
from tests.conftest import make_settings
from tests.helpers import record_sms

SENDERS = ("+821012345601", "+821012345602", "+33612345604")


@pytest.fixture
def services(tmp_path, postgres_only_url):
    services = build_services(make_settings(tmp_path / "var", postgres_only_url), dispatcher=RecordingDispatcher())
    yield services
    services.dispose()


def _bounded(plan: str) -> bool:
    """Every read of inbound_events in the plan is an index range on the sender or the time (not a sequential
    scan, nor a whole index read and filtered)."""
    lines = plan.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"Scan.* on inbound_events", line):
            if "Seq Scan" in line:
                return False
            condition = next((ln for ln in lines[i + 1:i + 3] if "Index Cond:" in ln), "")
            if "sender" not in condition and "received_at >" not in condition:
                return False
    return True


def _plans_scanning_inbound_events(services, run) -> tuple[int, list[str]]:
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "inbound_events" in statement:
            statements.append((statement, parameters))

    engine = services.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    scans = []
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            if not _bounded(plan):
                scans.append(plan)
    return len(statements), scans


def test_the_limits_read_a_senders_recent_events_by_index(services):
    for i in range(30):
        record_sms(services, SENDERS[i % 3], f"C1 reply {i}")
    with services.sessions() as session:
        events = list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))

        def per_event():
            limits.over_rate(session, services.settings, events[-1])
            limits.repeats_last_post(session, events[-1], "C1 reply 29")

        def per_batch():
            recent = limits.Recent(session, events[-6:])
            recent.over_rate(services.settings, events[-1])
            recent.repeats_last_post(session, events[-1], "C1 reply 29")

        for run in (per_event, per_batch):
            count, scans = _plans_scanning_inbound_events(services, run)
            assert count >= 1 and not scans, (run.__name__, scans)
