"""Shared fixtures. The suite runs against the real PostgreSQL and Redis on localhost and against
SQLite; under CI=true a missing PostgreSQL or Redis fails the run instead of skipping."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.infra.migrate import upgrade
from relay.infra.settings import Settings
from relay.model.messages import OutboundMessage, SendResult
from relay.model.tables import Base
from relay.services import build_services
from tests.standins.twilio_api import TwilioStandIn

# The WhatsApp fixtures (wa_network, wa_services, ...) for every test file, without importing them by name.
pytest_plugins = ["tests.whatsapp_fixtures"]

POSTGRES_ADMIN_URL = os.environ.get("RELAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
OUR_NUMBER = "+15005550006"
PUBLIC_BASE = "https://relay.example.org"


# The test files that share one relay cluster (tests/e2e/shared_cluster.py): under `--dist loadfile` they
# are scheduled as one unit, so a single xdist worker starts the cluster once for all of them.
SHARED_CLUSTER_FILES = ("tests/e2e/test_browser.py", "tests/e2e/test_email_thread.py")


# The longest files first (real processes, browsers, 11,000 fuzzed requests): under `--dist loadfile` a worker
# takes the next file when it is free, so a long file started last would run alone at the end.
SLOW_FIRST = ("tests/e2e/", "tests/faults/", "tests/unit/webhooks/test_hostile_webhooks.py",
              "tests/unit/webhooks/test_api_fuzz.py", "tests/unit/reach/test_scale.py")


def pytest_collection_modifyitems(session, config, items):
    def slow_rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=slow_rank)  # stable: the order within each group is kept


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    # keep SLOW_FIRST's order (xdist's default reorders the files by their number of tests, which put the
    # few-test, long e2e files last)
    config.option.loadscopereorder = False

    class SharedClusterScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "shared-cluster" if scope in SHARED_CLUSTER_FILES else scope

    return SharedClusterScheduling(config, log)


@pytest.fixture(autouse=True)
def quick_password_hashing(request, monkeypatch):
    """argon2id at its lowest cost in the test process: production's costs 85 ms a hash, and the suite sets
    about a thousand passwords. Processes the tests start (e2e) hash at production cost; so do tests marked
    real_password_hashing (tests/unit/webhooks/test_console.py checks the production parameters)."""
    if request.node.get_closest_marker("real_password_hashing"):
        return
    from argon2 import PasswordHasher

    from relay.access import accounts

    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


def unavailable(what: str, exc: Exception):
    message = f"{what} unavailable: {type(exc).__name__}: {exc}"
    if IN_CI:
        pytest.fail(message + " (required in CI)")
    pytest.skip(message)


@contextlib.contextmanager
def fresh_postgres_database(purpose: str = ""):
    """A new PostgreSQL database, migrated; dropped when the block ends."""
    name = f"relay_test_{secrets.token_hex(4)}{purpose}"
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this run, migrated, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'relay.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url():
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def producer(redis_url, tmp_path, worker_id):
    """A Celery app that only publishes, on the real Redis broker under a prefix of this test worker's, the
    broker's client to read what it queued, and the prefix; the prefix's keys are deleted after the test."""
    import redis
    from celery import Celery

    from relay.infra.dispatch import celery_config

    prefix = f"relay-test-producer-{worker_id}:"
    settings = make_settings(tmp_path, "sqlite://", broker_url=redis_url, broker_prefix=prefix)
    app = Celery("relay-test-producer", set_as_current=False)
    app.conf.update(celery_config(settings))
    client = redis.Redis.from_url(redis_url)
    yield app, client, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def _empty_tables(url: str) -> None:
    """Empty every table and restart the id sequences, as a fresh database would be.

    On PostgreSQL, DELETE with the foreign-key triggers off (session_replication_role) and setval() on each
    sequence: the same end state as TRUNCATE ... RESTART IDENTITY, at about 2 ms instead of 350-900 ms
    (TRUNCATE makes new files for all 32 tables; the suite empties a database about 1,500 times)."""
    engine = create_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            sequences = conn.execute(text(
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'")).scalars()
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(";".join(f"DELETE FROM {table}" for table in tables)))
            restarts = [f"setval('{name}', 1, false)" for name in sequences]
            if restarts:
                conn.execute(text("SELECT " + ", ".join(restarts)))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each test using it runs twice: on SQLite and on PostgreSQL (emptied after each test)."""
    url = request.getfixturevalue(f"{request.param}_url" if request.param == "sqlite" else "postgres_url")
    yield url
    _empty_tables(url)


@pytest.fixture
def postgres_only_url(postgres_url):
    yield postgres_url
    _empty_tables(postgres_url)


def make_settings(var_dir: Path, database_url: str, **overrides) -> Settings:
    base = dict(var_dir=var_dir, database_url=database_url, broker_url="memory://",
                public_base_url=PUBLIC_BASE, twilio_auth_token=AUTH_TOKEN, twilio_numbers=(OUR_NUMBER,),
                quiet_hours="off")  # issue 5: tests that need quiet hours ask for them
    # (tests/unit/outbound/test_quiet_hours.py)
    base.update(overrides)
    return Settings(**base).with_defaults()


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return make_settings(tmp_path / "var", database_url)


class RecordingSender:
    """Captures outbound SMS in memory (the provider edge); see test_sending for real HTTP."""

    name = "recording"

    def __init__(self):
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        prefix = "SM" if message.channel == "sms" else "mail-"
        return SendResult(provider_message_id=f"{prefix}{message.delivery_id:032x}")


@pytest.fixture
def sms():
    return RecordingSender()


@pytest.fixture
def mail():
    return RecordingSender()


@pytest.fixture
def services(settings, sms, mail):
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={"sms": sms, "email": mail})
    yield services
    services.dispose()


@pytest.fixture
def twilio_standin():
    standin = TwilioStandIn().start()
    yield standin
    standin.stop()


def run_worker(services) -> None:
    """Do what the Celery worker would, until nothing is left in the recording dispatcher."""
    from relay.inbound.sms import process_inbound
    from relay.inbound.statuses import apply_status
    from relay.outbound.sending import send_delivery

    dispatcher: RecordingDispatcher = services.dispatcher
    for _ in range(1000):
        if dispatcher.inbound:
            process_inbound(services, dispatcher.inbound.pop(0))
        elif dispatcher.deliveries:
            send_delivery(services, dispatcher.deliveries.pop(0))
        elif dispatcher.statuses:
            apply_status(services, dispatcher.statuses.pop(0))
        else:
            return
    raise AssertionError("the worker never ran out of work")


DEMO_CSV = """name,phone,email,timezone,language,lists,roles
Kim Jiwon,+821012345601,jiwon@example.org,Asia/Seoul,ko,tft,coordinator;member
Lee Minho,+821012345602,minho@example.org,Asia/Seoul,en,tft,member
Park Seoyeon,+821012345603,seoyeon@example.org,Asia/Seoul,en,tft,member
Alice Moreau,+33612345604,alice@example.org,Europe/Paris,en,tft,member
Ben Carter,+12025550105,ben@example.org,America/New_York,en,tft;us,member
"""


@pytest.fixture
def network(services):
    """Five members on list 'tft' and one case, C1 (no notice sent yet)."""
    from relay.library.cases import create_case
    from relay.members.directory import import_members

    with transaction(services.sessions) as session:
        report = import_members(session, DEMO_CSV)
        assert not report.errors, report.errors
        case = create_case(session, "Fever and ground-glass opacities", chief_complaint="fever")
        assert case.code == "C1"
    return services
