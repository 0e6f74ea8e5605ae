"""The inbound limits (relay/inbound/limits.py) read a sender's recent events through an index, per event and
per batch: on PostgreSQL (5,000 older events, analyzed), no query of theirs scans inbound_events, and the
per-event ones, which name one sender, use ix_inbound_sender_time (migration 0022). Without it each reply's flood
and repeat checks read every stored SMS (issue 18)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from relay.inbound import limits
from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import InboundEvent, utcnow
from relay.services import build_services
from tests.conftest import fresh_postgres_database, make_settings
from tests.helpers import record_sms

SENDERS = ("+821012345601", "+821012345602", "+33612345604")


@pytest.fixture
def services(tmp_path, postgres_only_url):
    services = build_services(make_settings(tmp_path / "var", postgres_only_url), dispatcher=RecordingDispatcher())
    yield services
    services.dispose()


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
            # one sender: the per-event checks (a batch's senders read `sender = ANY (...)`, relay/infra/storage.py)
            by_sender = "sender =" in statement and "sender = ANY" not in statement
            if "Seq Scan on inbound_events" in plan or (by_sender and "ix_inbound_sender_time" not in plan):
                scans.append(plan)
    return len(statements), scans


def test_the_limits_read_a_senders_recent_events_by_index(services):
    # a day of stored SMS from 500 numbers, then today's three senders (the planner's statistics up to date)
    day_ago = utcnow() - timedelta(days=1)
    with services.engine.begin() as conn:
        conn.execute(InboundEvent.__table__.insert(), [
            {"provider": "twilio", "kind": "sms", "dedupe_key": f"SMold{i}", "raw": "", "sender": f"+1202555{i % 500:04d}",
             "outcome": "posted", "attempts": 1, "received_at": day_ago + timedelta(seconds=i), "rules_fired": [],
             "detail": "", "last_error": "", "content_type": "", "guard_verdict": "", "guard_kinds": []}
            for i in range(5000)])
        conn.execute(text("ANALYZE inbound_events"))
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


@pytest.fixture
def fresh_services(tmp_path):
    """Services on a database of their own, new: no table of it was ever analyzed."""
    with fresh_postgres_database("_nostats") as url:
        services = build_services(make_settings(tmp_path / "var", url), dispatcher=RecordingDispatcher())
        yield services
        services.dispose()


def test_the_batch_query_reads_by_sender_even_without_the_planners_statistics(fresh_services):
    """A burst's new rows before autovacuum's ANALYZE: the planner has no statistics for inbound_events.
    The batch's query of its senders' recent events still goes through ix_inbound_sender_time, not through
    the (provider, kind, dedupe_key) index or the window's index, each of which reads every recent event
    (~150 ms a batch of 200 with 30,000 stored, against ~2 ms; issue 18, item 4)."""
    services = fresh_services
    recent_start = utcnow() - timedelta(seconds=40)
    with services.engine.begin() as conn:
        conn.execute(InboundEvent.__table__.insert(), [
            {"provider": "twilio", "kind": "sms", "dedupe_key": f"SMburst{i}", "raw": "x" * 400,
             "sender": f"+1202555{i % 2000:04d}", "outcome": "posted", "attempts": 1,
             "received_at": recent_start + timedelta(milliseconds=i), "rules_fired": [], "detail": "",
             "last_error": "", "content_type": "", "guard_verdict": "", "guard_kinds": []}
            for i in range(8000)])
        analyzed = conn.execute(text("SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables "
                                     "WHERE relname = 'inbound_events'")).scalar()
    assert analyzed is None  # the premise: no statistics
    for i in range(12):
        record_sms(services, SENDERS[i % 3], f"C1 burst reply {i}")
    with services.sessions() as session:
        events = list(session.scalars(select(InboundEvent).where(InboundEvent.dedupe_key.not_like("SMburst%"))
                                      .order_by(InboundEvent.id)))
        statements: list[tuple[str, object]] = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "sender = ANY" in statement:
                statements.append((statement, parameters))

        event.listen(services.engine, "before_cursor_execute", keep)
        try:
            recent = limits.Recent(session, events)
        finally:
            event.remove(services.engine, "before_cursor_execute", keep)
        assert recent.over_rate(services.settings, events[-1]) in (True, False)
    assert len(statements) == 1
    with services.engine.connect() as conn:
        statement, parameters = statements[0]
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "ix_inbound_sender_time" in plan, plan


def test_the_batch_query_brings_the_body_of_each_senders_latest_post_only(services):
    """In a burst a sender has many posts within REPEAT_WINDOW: the batch's query brings the body of the latest
    one, the one the repeat check compares with, not every one of them (issue 18, item 4). An earlier post is
    read from the database should the check need it (a post replayed from the spool, received earlier)."""
    ids = [record_sms(services, SENDERS[0], f"C1 post {i}") for i in range(4)]
    ids.append(record_sms(services, SENDERS[1], "C1 only post"))
    with services.engine.begin() as conn:
        conn.execute(InboundEvent.__table__.update().where(InboundEvent.id.in_(ids)).values(outcome="posted"))
    later = [record_sms(services, SENDERS[0], "C1 post 3"), record_sms(services, SENDERS[1], "C1 new")]
    with services.sessions() as session:
        events = list(session.scalars(select(InboundEvent).where(InboundEvent.id.in_(later)).order_by(InboundEvent.id)))
        recent = limits.Recent(session, events)
        bodies = {event_id: raw for rows in recent._by_sender.values() for event_id, _at, _outcome, raw in rows}
        assert [event_id for event_id, raw in sorted(bodies.items()) if raw] == [ids[3], ids[4]]
        assert "Body=C1+post+3&" in bodies[ids[3]] + "&"
        assert recent.repeats_last_post(session, events[0], "C1 post 3")  # the latest post, brought along
        assert not recent.repeats_last_post(session, events[1], "C1 new")
