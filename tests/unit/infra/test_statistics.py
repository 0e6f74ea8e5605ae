"""relay/infra/statistics.py: a table that outgrew its statistics is analyzed (so PostgreSQL plans it again), a
table of history is not, one look per CHECK_EVERY, and a database that refuses is asked once."""
from __future__ import annotations

import logging

from sqlalchemy import text

from relay.infra.db import make_engine
from relay.infra.statistics import MINIMUM, Refresher


def _analyzed(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("ANALYZE deliveries"))  # statistics taken while it was empty, as a new network's are
        conn.commit()


def _rows_at_last_analyze(engine) -> float:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"))


def _queue(engine, n: int, start: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO deliveries (dedupe_key, purpose, channel, to_address, body, status, attempts, created_at,"
            " updated_at) SELECT 'test:' || i, 'notice', 'sms', '+1202555' || i, 'x', 'queued', 0, now(), now()"
            " FROM generate_series(:start, :start + :n - 1) AS i"), {"start": start, "n": n})
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # the counts the refresher reads, now


def test_a_table_that_outgrew_its_statistics_is_analyzed_once_per_doubling(postgres_only_url):
    engine = make_engine(postgres_only_url)
    _analyzed(engine)
    refresher = Refresher(tables=("deliveries",), check_every=0)
    _queue(engine, MINIMUM + 500, 1)
    assert refresher.refresh(engine) == ["deliveries"]
    assert _rows_at_last_analyze(engine) == MINIMUM + 500  # planned from what it holds now
    _queue(engine, 600, 10_000)  # fewer changes than it held at that analyze: left to autovacuum
    assert refresher.refresh(engine) == []
    _queue(engine, MINIMUM, 20_000)  # now as many as it held
    assert refresher.refresh(engine) == ["deliveries"]
    engine.dispose()


def test_it_looks_at_most_once_per_interval(postgres_only_url):
    now = [100.0]
    engine = make_engine(postgres_only_url)
    _analyzed(engine)
    refresher = Refresher(tables=("deliveries",), check_every=2.0, clock=lambda: now[0])
    assert refresher.refresh(engine) == []  # looked: nothing to do
    _queue(engine, MINIMUM + 500, 1)
    assert refresher.refresh(engine) == []  # too soon to look again
    now[0] += 2.0
    assert refresher.refresh(engine) == ["deliveries"]
    engine.dispose()


def test_sqlite_has_nothing_to_refresh(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/relay.sqlite3")
    assert Refresher(check_every=0).refresh(engine) == []
    engine.dispose()


def test_a_database_that_refuses_is_asked_once_and_told_in_the_log(postgres_only_url, monkeypatch, caplog):
    engine = make_engine(postgres_only_url)
    refresher = Refresher(tables=("deliveries",), check_every=0)
    calls = []

    def refuse(_engine):
        from psycopg.errors import InsufficientPrivilege
        from sqlalchemy.exc import ProgrammingError

        calls.append(1)  # as SQLAlchemy raises PostgreSQL's refusal, whatever language its message is in
        raise ProgrammingError("ANALYZE", {}, InsufficientPrivilege("permission denied for table deliveries"))

    monkeypatch.setattr(refresher, "_analyze", refuse)
    with caplog.at_level(logging.WARNING, logger="relay.infra.statistics"):
        assert refresher.refresh(engine) == [] and refresher.refresh(engine) == []
    assert calls == [1]
    assert "leaving their statistics to autovacuum" in caplog.text
    engine.dispose()


def test_a_table_the_database_user_does_not_own_is_left_to_autovacuum(postgres_only_url):
    """PostgreSQL skips ANALYZE of a table its user does not own with a warning, not an error: asked anyway, the
    refresher would log "analyzed" every few seconds and change nothing."""
    import secrets

    from sqlalchemy.engine import make_url

    admin = make_engine(postgres_only_url)
    role = f"relay_test_not_owner_{secrets.token_hex(4)}"  # roles are the server's: one of this run's own
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        conn.commit()
    try:
        _analyzed(admin)
        _queue(admin, MINIMUM + 500, 1)
        guest = make_engine(make_url(postgres_only_url).set(username=role).render_as_string(hide_password=False))
        try:
            assert Refresher(tables=("deliveries",), check_every=0).refresh(guest) == []
        finally:
            guest.dispose()
        assert Refresher(tables=("deliveries",), check_every=0).refresh(admin) == ["deliveries"]  # the owner may
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))  # its grants in this database
            conn.execute(text(f"DROP ROLE {role}"))
            conn.commit()
        admin.dispose()
