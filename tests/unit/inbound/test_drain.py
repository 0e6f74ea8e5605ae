"""The cheap hand-off at the webhook edge: one doorbell ring per webhook (real Redis), one drain task
for whatever is waiting, claims that split the work between drainers (real PostgreSQL)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, update

from relay.inbound import drain as inbound_drain
from relay.infra.dispatch import TASK_DRAIN_INBOUND, CeleryDispatcher
from relay.infra.doorbell import RedisDoorbell
from relay.model.tables import InboundEvent, Post, utcnow
from relay.services import build_services
from relay.sweeper import sweep
from tests.conftest import make_settings
from tests.helpers import post_signed, sms_form
from webhooks.app import create_app

SMS = "/webhooks/twilio/sms"


def stored_sms(client, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        response = post_signed(client, SMS, sms_form("+821012345602", f"C1 reply {i}", sid=f"SM{i:032x}"))
        assert response.status_code == 200


def outcomes(services) -> dict[str, int]:
    with services.sessions() as session:
        return dict(session.execute(select(InboundEvent.outcome, func.count()).group_by(InboundEvent.outcome)).all())


def test_drain_processes_everything_waiting_once(network):
    client = create_app(services=network).test_client()
    stored_sms(client, 7)
    report = inbound_drain.drain(network)
    assert (report.processed, report.failed, report.more) == (7, 0, False)
    with network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 7
        assert session.scalar(select(func.count()).select_from(InboundEvent)
                              .where(InboundEvent.processed_at.is_(None))) == 0
    assert inbound_drain.drain(network).processed == 0  # nothing left: a second drain does nothing


def test_the_drain_refreshes_the_statistics_of_what_it_grew_after_each_claimed_batch(network, monkeypatch):
    """relay/infra/statistics.py: a burst can grow posts and deliveries many times over before autovacuum looks,
    and PostgreSQL keeps planning them as they were (the relays' foreign-key check on posts read the table)."""
    client = create_app(services=network).test_client()
    stored_sms(client, 5)
    asked = []
    monkeypatch.setattr(inbound_drain, "refresh_statistics", lambda engine: asked.append(engine))
    monkeypatch.setattr(inbound_drain, "BATCH", 2)
    assert inbound_drain.drain(network).processed == 5
    assert asked and all(engine is network.engine for engine in asked)
    assert len(asked) == 3  # claims of 2, 2 and 1


def test_drain_stops_at_its_budget_and_says_more_may_wait(network):
    client = create_app(services=network).test_client()
    stored_sms(client, 5)
    first = inbound_drain.drain(network, budget=3)
    assert (first.processed, first.more) == (3, True)
    second = inbound_drain.drain(network, budget=3)
    assert (second.processed, second.more) == (2, False)


def test_a_lingering_drain_sees_an_event_stored_after_its_last_empty_claim(network):
    """The window of a coalesced ring (relay/infra/doorbell.py): an event committed just after the drain
    found nothing, by a web process that skipped its ring, is still taken by that drain."""
    client = create_app(services=network).test_client()
    stored_sms(client, 2)
    lingered = []

    def a_webhook_arrives_meanwhile(seconds):
        lingered.append(seconds)
        if len(lingered) == 1:
            stored_sms(client, 1, start=2)

    report = inbound_drain.drain(network, linger=0.1, sleep=a_webhook_arrives_meanwhile)
    assert (report.processed, report.more) == (3, False)
    assert lingered == [0.1, 0.1]  # after each empty claim; the second found nothing and ended it
    assert outcomes(network).get("received", 0) == 0

    stored_sms(client, 1, start=3)  # without a linger, the drain ends at its first empty claim
    assert inbound_drain.drain(network, sleep=a_webhook_arrives_meanwhile).processed == 1
    assert len(lingered) == 2


def test_a_full_claim_asks_for_a_helper_once(network, monkeypatch):
    monkeypatch.setattr(inbound_drain, "BATCH", 2)
    client = create_app(services=network).test_client()
    stored_sms(client, 5)
    calls = []
    inbound_drain.drain(network, on_backlog=lambda: calls.append(1))
    assert calls == [1]


def test_one_failing_event_does_not_hold_up_the_rest(network, monkeypatch, caplog):
    client = create_app(services=network).test_client()
    stored_sms(client, 3)
    real = inbound_drain.process_event

    def flaky(services, event_id, kind):
        if event_id == 2:
            raise RuntimeError("poison")
        return real(services, event_id, kind)

    monkeypatch.setattr(inbound_drain, "process_event", flaky)
    report = inbound_drain.drain(network)
    assert (report.processed, report.failed) == (2, 1)
    assert "inbound 2 (sms): processing failed" in caplog.text
    # the failed one is claimed, so only the sweeper brings it back, once its claim is old
    long_ago = utcnow() - timedelta(minutes=10)
    with network.sessions.begin() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == 2).values(received_at=long_ago,
                                                                               dispatched_at=long_ago))
    network.dispatcher.inbound.clear()  # what the webhooks rang for
    assert sweep(network).inbound == 1
    assert network.dispatcher.inbound == [2]


def _attempts(services, event_id: int) -> tuple[int, str, str]:
    with services.sessions() as session:
        event = session.get(InboundEvent, event_id)
        return event.attempts, event.outcome, event.last_error


def _blinks(kind: str):
    """A database error as the driver reports a dropped connection or a server restarting."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if kind == "operational":
        return OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    error = DBAPIError("SELECT 1", {}, Exception("connection reset"), connection_invalidated=True)
    assert error.connection_invalidated
    return error


@pytest.mark.parametrize("kind", ["operational", "invalidated"])
def test_a_transient_database_error_does_not_use_up_an_events_attempts(network, monkeypatch, kind):
    """issue 13, item 9: a database that blinks ten times must not set a good SMS aside as failed."""
    from relay.inbound import sms as processing
    from relay.sweeper import MAX_ATTEMPTS

    client = create_app(services=network).test_client()
    stored_sms(client, 1)
    real = processing._process
    monkeypatch.setattr(processing, "_process", lambda *args: (_ for _ in ()).throw(_blinks(kind)))
    for _ in range(MAX_ATTEMPTS + 1):
        with pytest.raises(Exception):
            inbound_drain.drain(network)  # the drain stops; its task retries later
        with network.sessions.begin() as session:
            session.execute(update(InboundEvent).values(dispatched_at=None))
    assert _attempts(network, 1)[:2] == (0, "received")
    assert sweep(network).set_aside == 0
    monkeypatch.setattr(processing, "_process", real)
    assert inbound_drain.drain(network).processed == 1
    assert _attempts(network, 1)[1] == "posted"


def test_any_other_error_uses_an_attempt_and_is_kept_as_the_last_error(network, monkeypatch):
    from relay.inbound import sms as processing

    client = create_app(services=network).test_client()
    stored_sms(client, 1)
    monkeypatch.setattr(processing, "_process", lambda *args: (_ for _ in ()).throw(ValueError("a bad row")))
    assert inbound_drain.drain(network).failed == 1
    assert _attempts(network, 1) == (1, "received", "ValueError: a bad row")


def test_status_callbacks_are_drained_too(network):
    client = create_app(services=network).test_client()
    response = post_signed(client, "/webhooks/twilio/status", {"MessageSid": "SM" + "e" * 32,
                                                               "MessageStatus": "delivered"})
    assert response.status_code == 200
    report = inbound_drain.drain(network)
    assert report.processed == 1
    assert outcomes(network) == {"unmatched": 1}  # no such delivery: kept for the sweeper, as before


def test_two_drainers_side_by_side_split_the_work(postgres_only_url, tmp_path, sms, mail):
    """Real PostgreSQL, two threads draining at once: every event is claimed by exactly one."""
    from relay.infra.db import transaction
    from relay.infra.dispatch import RecordingDispatcher
    from relay.library.cases import create_case
    from relay.members.directory import import_members
    from tests.conftest import DEMO_CSV

    services = build_services(make_settings(tmp_path, postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={"sms": sms, "email": mail})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "Fever", chief_complaint="fever")
    stored_sms(create_app(services=services).test_client(), 120)
    claimed: list[list[int]] = [[], []]
    real = inbound_drain.process_event

    def recording(index):
        def process(svc, event_id, kind):
            claimed[index].append(event_id)
            return real(svc, event_id, kind)
        return process

    barrier = threading.Barrier(2)
    results = []

    def run(index):
        barrier.wait()
        results.append(_drain_with(services, recording(index)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed[0] + claimed[1]
    assert sorted(everything) == list(range(1, 121))  # each exactly once
    assert claimed[0] and claimed[1]  # both did some
    with services.sessions() as session:  # all processed (past 20 a minute, one sender is flood-limited)
        assert session.scalar(select(func.count()).select_from(InboundEvent)
                              .where(InboundEvent.processed_at.is_not(None))) == 120
        assert session.scalar(select(func.count()).select_from(Post)) == 20
    services.dispose()


def _drain_with(services, process):
    """drain's loop with its own per-event function (threads cannot each monkeypatch the module)."""
    processed = 0
    while True:
        claimed = inbound_drain.claim_waiting(services, 10)
        if not claimed:
            return processed
        for event_id, kind in claimed:
            process(services, event_id, kind)
            processed += 1


# ---- the doorbell and the Celery hand-off, on real Redis


@pytest.fixture
def doorbell(redis_url, worker_id):
    bell = RedisDoorbell.from_url(redis_url, prefix=f"relay-test-doorbell-{worker_id}:")  # xdist: one per worker
    bell.silence()
    yield bell
    bell.silence()
    bell.client.delete(bell.key + ":helper")
    bell.client.close()


def test_only_the_ring_that_finds_the_bell_silent_counts(doorbell):
    assert doorbell.ring() is True
    assert doorbell.ring() is False
    assert 0 < doorbell.client.ttl(doorbell.key) <= doorbell.ttl  # a lost drain task cannot keep it rung
    doorbell.silence()
    assert doorbell.ring() is True


def test_rings_in_the_coalescing_window_cost_no_round_trip(redis_url, worker_id):
    now = [100.0]
    bell = RedisDoorbell(redis.Redis.from_url(redis_url), f"relay-test-doorbell-{worker_id}:coalesce",
                         coalesce_seconds=0.05, clock=lambda: now[0])
    bell.client.delete(bell.key)
    try:
        assert bell.ring() is True
        bell.client.delete(bell.key)  # what the drain task does when it starts
        now[0] += 0.04
        assert bell.ring() is False  # inside the window: that drain claims after this moment
        assert bell.client.exists(bell.key) == 0  # no SET was sent
        now[0] += 0.02
        assert bell.ring() is True  # past it: a real ring, and a new drain task
        assert bell.ring() is False and bell.client.exists(bell.key) == 1
        bell.silence()  # a failed publish: this process's next webhook rings at once
        assert bell.ring() is True
    finally:
        bell.client.delete(bell.key)
        bell.client.close()


def test_a_helper_slot_is_given_once_per_interval(doorbell):
    assert doorbell.claim_helper_slot() is True
    assert doorbell.claim_helper_slot() is False


def queued_tasks(client, prefix: str) -> list[str]:
    import json

    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(f"{prefix}inbound", 0, -1)]


def test_a_burst_of_webhooks_queues_one_drain_task(producer, doorbell):
    app, client, prefix = producer
    dispatcher = CeleryDispatcher(app, doorbell=doorbell)
    for event_id in range(1, 51):
        dispatcher.inbound_received(event_id, "sms")
    assert queued_tasks(client, prefix) == [TASK_DRAIN_INBOUND]
    doorbell.silence()  # what the drain task does first: the next webhook queues a new one
    dispatcher.inbound_received(51, "status")
    assert queued_tasks(client, prefix) == [TASK_DRAIN_INBOUND, TASK_DRAIN_INBOUND]


def test_without_a_doorbell_each_webhook_is_its_own_task(producer):
    app, client, prefix = producer
    dispatcher = CeleryDispatcher(app)
    dispatcher.inbound_received(1, "sms")
    dispatcher.inbound_received(2, "status")
    assert sorted(queued_tasks(client, prefix)) == ["relay.apply_status", "relay.process_inbound"]


def test_a_failed_publish_silences_the_bell_so_the_next_webhook_tries_again(producer, doorbell):
    app, client, prefix = producer
    dispatcher = CeleryDispatcher(app, doorbell=doorbell)
    dispatcher.drain_inbound = lambda: (_ for _ in ()).throw(ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        dispatcher.inbound_received(1, "sms")
    assert doorbell.ring() is True  # silent again


# ---------------------------------------------------------------- a hung Redis (issue 13, item 9)


@pytest.fixture
def hung_redis():
    """A loopback TCP server that accepts connections and never answers: a Redis that hangs."""
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_the_doorbell_gives_up_on_a_hung_redis_within_its_short_timeout(hung_redis):
    import time

    from relay.infra.doorbell import REDIS_TIMEOUT_SECONDS

    assert REDIS_TIMEOUT_SECONDS <= 0.5
    bell = RedisDoorbell.from_url(hung_redis)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        bell.ring()
    assert time.monotonic() - started < REDIS_TIMEOUT_SECONDS + 0.5


def test_a_webhook_is_answered_quickly_while_redis_hangs(network, hung_redis, tmp_path, sms, mail):
    """The edge stores the SMS, the ring times out (logged, the sweeper queues it) and Twilio gets its 200."""
    import time

    settings = make_settings(tmp_path, network.settings.database_url, broker_url=hung_redis)
    services = build_services(settings, senders={"sms": sms, "email": mail})
    client = create_app(services=services).test_client()
    started = time.monotonic()
    response = post_signed(client, SMS, sms_form("+821012345602", "C1 while Redis hangs", sid="SM" + "7" * 32))
    took = time.monotonic() - started
    services.dispose()
    assert response.status_code == 200
    assert took < 1.5, f"the webhook took {took:.1f} s"
    assert outcomes(network) == {"received": 1}  # kept, waiting for the sweeper


def test_a_claim_takes_at_most_its_limit_with_the_rows_picked_once(network):
    """A claim of n never comes back with more than n (the drain's budget and its full-claim signal depend on it).
    On PostgreSQL the rows are picked in a MATERIALIZED CTE: as an `IN (subquery ... SKIP LOCKED)` a nested-loop
    plan may rescan the subquery, which then skips the rows just updated and takes the next (seen in this file:
    5 claimed for a budget of 3, under a plan the statistics of the moment chose)."""
    from sqlalchemy import event

    client = create_app(services=network).test_client()
    stored_sms(client, 5)
    sent: list[str] = []
    engine = network.sessions.kw["bind"]
    listener = lambda conn, cursor, statement, *args: sent.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        claimed = inbound_drain._claim(network, 3)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [event_id for event_id, _kind, _attempts in claimed] == sorted(event_id for event_id, _, _ in claimed)
    assert len(claimed) == 3
    claim = next(statement for statement in sent if "UPDATE inbound_events" in statement)
    if engine.dialect.name == "postgresql":
        assert "AS MATERIALIZED" in claim and "SKIP LOCKED" in claim
    assert len(inbound_drain._claim(network, 3)) == 2  # the rest, and nothing claimed twice


def test_the_drain_task_takes_the_drains_budget_before_handing_over(tmp_path, postgres_only_url):
    """The Celery task (workers/tasks.py) drains `drain.BUDGET` events before it queues a fresh task: the hand-over
    queues behind whatever is queued (a broadcast's, the relays' sends), so each one costs the backlog time. It
    passed a budget of its own, 500, after the drain's had become 1,000 (issue 18: 0.73 -> 0.90 of the ingest rate
    in `make bench` once the task took the drain's)."""
    from urllib.parse import urlencode

    from relay.inbound.record import record_inbound
    from relay.infra.db import transaction
    from workers.app import create_celery

    settings = make_settings(tmp_path / "var", postgres_only_url)
    app = create_celery(settings)
    services = build_services(settings)
    waiting = inbound_drain.BUDGET + 20
    with transaction(services.sessions) as session:
        for i in range(waiting):  # strangers' texts: processed quickly, each an "unknown sender" outcome
            form = sms_form(f"+1202555{i:04d}", f"hello {i}", sid=f"SM{i:032x}")
            record_inbound(session, provider="twilio", kind="sms", dedupe_key=form["MessageSid"],
                           raw=urlencode(form), sender=form["From"])
    report = app.tasks[TASK_DRAIN_INBOUND].apply().get()
    assert report["processed"] + report["failed"] == inbound_drain.BUDGET and report["more"] is True
    assert inbound_drain.BUDGET == 1000
    assert sum(outcomes(services).values()) == waiting
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)
                              .where(InboundEvent.processed_at.is_(None))) == 20
    services.dispose()
