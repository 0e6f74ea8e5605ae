"""Timestamps come back from PostgreSQL as UTC whatever the server's or the database's own time zone:
relay's connections ask for TimeZone UTC (relay/infra/db.make_engine), so psycopg hands back aware
datetimes in timezone.utc and relay.model.tables.UTCDateTime has nothing to convert on the hot path
(issue 18: converting every timestamp of a bulk batch was ~15 % of its calling thread's CPU)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from relay.infra.db import driver_autocommit, make_engine, make_session_factory
from relay.model.tables import Member

SEOUL = timezone(timedelta(hours=9))


@pytest.fixture
def seoul_database(postgres_only_url):
    """The test database with its default time zone set to Asia/Seoul (as a server in Korea might be)."""
    name = make_url(postgres_only_url).database
    admin = create_engine(postgres_only_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET timezone = \'Asia/Seoul\''))
    try:
        yield postgres_only_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET timezone'))
        admin.dispose()


def test_a_plain_connection_to_that_database_speaks_seoul_time(seoul_database):
    """The premise: without relay's setting, the session's zone is the database's."""
    engine = create_engine(seoul_database)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW TIME ZONE")).scalar() == "Asia/Seoul"
    engine.dispose()


def test_relay_sessions_and_kept_connections_speak_utc(seoul_database):
    engine = make_engine(seoul_database)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
        with driver_autocommit(engine) as driver:  # the webhook insert's connection (outside the pool)
            assert driver.execute("SHOW TIME ZONE").fetchone()[0] == "UTC"
    finally:
        engine.dispose()


def test_a_timestamp_written_in_another_zone_reads_back_as_the_same_instant_in_utc(seoul_database):
    engine = make_engine(seoul_database)
    sessions = make_session_factory(engine)
    written = datetime(2026, 12, 7, 23, 30, tzinfo=SEOUL)  # 14:30 UTC
    try:
        with sessions() as session, session.begin():
            member = Member(name="Kim", short_name="Kim", email="kim@example.org", created_at=written)
            session.add(member)
        with sessions() as session:
            read = session.scalar(select(Member.created_at).where(Member.email == "kim@example.org"))
        assert read == written
        assert read.tzinfo is timezone.utc
        assert (read.hour, read.minute) == (14, 30)
    finally:
        engine.dispose()


def test_options_in_the_url_are_kept_beside_the_time_zone(seoul_database):
    url = make_url(seoul_database).update_query_dict({"options": "-c application_name=relay-test"})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
            assert conn.execute(text("SHOW application_name")).scalar() == "relay-test"
    finally:
        engine.dispose()


def test_a_connection_in_another_zone_still_reads_utc(seoul_database):
    """A connection relay did not make (a script's own engine) gets the same instants, in UTC."""
    written = datetime(2026, 12, 7, 14, 30, tzinfo=timezone.utc)
    ours, theirs = make_engine(seoul_database), create_engine(seoul_database)
    try:
        with make_session_factory(ours)() as session, session.begin():
            session.add(Member(name="Lee", short_name="Lee", email="lee@example.org", created_at=written))
        with make_session_factory(theirs)() as session:
            read = session.scalar(select(Member.created_at).where(Member.email == "lee@example.org"))
        assert read == written and read.tzinfo is timezone.utc and read.hour == 14
    finally:
        ours.dispose()
        theirs.dispose()
