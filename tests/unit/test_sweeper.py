"""The sweeper re-dispatches what was committed but never queued, or never finished."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.infra.settings import Settings
from relay.model.tables import Delivery, InboundEvent, utcnow
from relay.outbound.deliveries import claim
from relay.outbound.fanout import plan
from relay.sweeper import sweep
from tests.conftest import run_worker
from tests.helpers import deliveries, event, record_sms


def age(services, model, seconds: int = 120) -> None:
    column = model.received_at if model is InboundEvent else model.created_at
    with transaction(services.sessions) as session:
        session.execute(update(model).values({column.key: utcnow() - timedelta(seconds=seconds)}))


def test_a_backlog_is_never_set_aside_and_not_requeued_every_sweep(network):
    from relay.sweeper import MAX_ATTEMPTS

    event_id = record_sms(network, "+821012345602", "C1 waiting in a long queue")
    for _ in range(MAX_ATTEMPTS + 2):
        age(network, InboundEvent)
        with transaction(network.sessions) as session:
            session.execute(update(InboundEvent).values(dispatched_at=None))  # as if 5 minutes passed
        report = sweep(network)
        assert report.inbound == 1 and report.set_aside == 0
    assert sweep(network).inbound == 0  # just re-queued: not again until REDISPATCH_AFTER
    run_worker(network)
    assert event(network, event_id).outcome == "posted"


def test_inbound_committed_while_the_broker_was_down_is_processed_later(network, sms):
    network.dispatcher.fail = True
    event_id = record_sms(network, "+821012345602", "C1 during the outage")
    network.dispatcher.fail = False
    assert network.dispatcher.inbound == []
    assert sweep(network).inbound == 0  # too fresh: it may still be on its way
    age(network, InboundEvent)
    report = sweep(network)
    assert report.inbound == 1
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert sweep(network).inbound == 0  # processed: never again


def test_deliveries_never_dispatched_are_dispatched(network, sms):
    with transaction(network.sessions) as session:
        plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": "+821012345602", "body": "hi"}])
    age(network, Delivery)
    assert sweep(network).deliveries == 1
    run_worker(network)
    assert [m.body for m in sms.sent] == ["hi"]
    age(network, Delivery)
    assert sweep(network).deliveries == 0


def test_a_send_abandoned_by_a_killed_worker_is_retried_once_its_lease_expires(network, sms):
    with transaction(network.sessions) as session:
        [delivery_id] = plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": "+821012345602",
                                        "body": "hi"}])
    with transaction(network.sessions) as session:
        claim(session, delivery_id, timedelta(seconds=-1))  # claimed, then the worker died
    assert sweep(network).deliveries == 1
    run_worker(network)
    assert deliveries(network)[0].status == "accepted"
    assert len(sms.sent) == 1


def test_gives_up_after_the_last_attempt(network):
    with transaction(network.sessions) as session:
        [delivery_id] = plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": "+821012345602",
                                        "body": "hi"}])
        session.execute(update(Delivery).values(attempts=network.settings.max_send_attempts - 1))
    with transaction(network.sessions) as session:
        claim(session, delivery_id, timedelta(seconds=-1))
    assert sweep(network).gave_up == 1
    row = deliveries(network)[0]
    assert row.status == "failed" and row.error_code == "lease"


def test_an_event_that_always_fails_is_set_aside_not_retried_forever(network, monkeypatch):
    from relay.inbound import sms as processing
    from relay.sweeper import MAX_ATTEMPTS

    event_id = record_sms(network, "+821012345602", "C1 poison")

    def crash(*args):
        raise RuntimeError("a bug that crashes every worker")

    monkeypatch.setattr(processing, "_process", crash)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(RuntimeError):
            processing.process_inbound(network, event_id)
    report = sweep(network)
    assert report.inbound == 0 and report.set_aside == 1
    stored = event(network, event_id)
    assert stored.outcome == "failed" and stored.processed_at is not None and "C1+poison" in stored.raw


def test_an_inbound_email_never_queued_is_processed_later(network):
    from relay.inbound.record import record_inbound

    with transaction(network.sessions) as session:
        event_id = record_inbound(session, provider="postmark", kind="email", dedupe_key="mid:x@example.org",
                                  raw="", payload=b'{"FromFull": {"Email": "nobody@example.org"}}',
                                  content_type="application/json").event_id
    age(network, InboundEvent)
    assert sweep(network).inbound == 1
    run_worker(network)
    assert event(network, event_id).processed_at is not None


# ---------------------------------------------------------------- raw bodies (issue 13, item 11)


def _record_email(services, key: str, text: str) -> int:
    from relay.inbound.record import record_inbound

    payload = ('{"FromFull": {"Email": "alice@example.org"}, "Subject": "[C1]", "TextBody": "%s"}' % text).encode()
    with transaction(services.sessions) as session:
        event_id = record_inbound(session, provider="postmark", kind="email", dedupe_key=key, raw="",
                                  payload=payload, content_type="application/json").event_id
    services.dispatcher.process_inbound(event_id)
    return event_id


def _make_old(services, event_ids, days: int) -> None:
    with transaction(services.sessions) as session:
        session.execute(update(InboundEvent).where(InboundEvent.id.in_(event_ids))
                        .values(received_at=utcnow() - timedelta(days=days)))


def test_raw_bodies_are_purged_after_the_retention_and_the_posts_stay(network):
    from relay.model.tables import Post

    old_sms = record_sms(network, "+821012345602", "C1 febrile 39.2, CRP 180, started meropenem")
    old_email = _record_email(network, "mid:old@example.org", "HRCT: bilateral GGO")
    new_sms = record_sms(network, "+821012345602", "C1 afebrile today, CRP 40")
    run_worker(network)
    waiting = record_sms(network, "+821012345603", "C1 never processed yet")  # not processed: kept
    network.dispatcher.inbound.clear()
    _make_old(network, [old_sms, old_email, waiting], days=31)
    before = {i: event(network, i) for i in (old_sms, old_email, new_sms)}

    sweep(network)

    purged_sms, purged_email, kept = event(network, old_sms), event(network, old_email), event(network, new_sms)
    for purged in (purged_sms, purged_email):
        assert purged.raw == "" and purged.payload is None and purged.raw_purged_at is not None
        was = before[purged.id]  # the metadata stays
        assert (purged.sender, purged.dedupe_key, purged.kind, purged.outcome, purged.processed_at,
                purged.received_at) == (was.sender, was.dedupe_key, was.kind, was.outcome, was.processed_at,
                                        was.received_at)
    assert "meropenem" not in purged_sms.raw and purged_sms.outcome == "posted"
    assert "afebrile" in kept.raw and kept.raw_purged_at is None
    assert "never+processed" in event(network, waiting).raw  # its message must still be processed
    with network.sessions() as session:
        bodies = list(session.scalars(select(Post.body).order_by(Post.id)))
    assert any("meropenem" in b for b in bodies) and any("afebrile" in b for b in bodies)

    stamp = purged_sms.raw_purged_at
    sweep(network)  # idempotent: nothing purged twice, nothing else changed
    assert event(network, old_sms).raw_purged_at == stamp and "afebrile" in event(network, new_sms).raw


def test_the_purge_runs_in_short_batches_and_can_be_turned_off(network):
    from relay.inbound.retention import purge_raw_bodies

    ids = [record_sms(network, "+821012345602", f"C1 note {n}", sid=f"SM{n:032d}") for n in range(7)]
    run_worker(network)
    _make_old(network, ids, days=40)
    network.settings = network.settings.replace(raw_retention=timedelta(0))  # 0: kept
    assert purge_raw_bodies(network) == 0
    network.settings = network.settings.replace(raw_retention=timedelta(days=30))
    assert purge_raw_bodies(network, batch=3, max_batches=2) == 6  # two transactions of three
    assert purge_raw_bodies(network, batch=3, max_batches=2) == 1  # the rest on the next sweep
    assert purge_raw_bodies(network, batch=3, max_batches=2) == 0
    assert all(event(network, i).raw == "" for i in ids)
    assert Settings.from_env({}).raw_retention == timedelta(days=30)
    assert Settings.from_env({"RELAY_RAW_RETENTION": "7d"}).raw_retention == timedelta(days=7)


# ---------------------------------------------------------------- the sweeper's heartbeat (issue 13, item 9)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_warns_when_no_sweeper_has_run_for_two_periods(network, caplog):
    """relay worker's watch (relay/infra/heartbeats.py) reads the heartbeat every sweep() records."""
    import logging

    from relay.infra.heartbeats import SWEEP, SweeperWatch, last

    clock = _Clock()
    watch = SweeperWatch(network.sessions, period=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="relay.infra.heartbeats"):
        clock.now = 59  # the grace: a sweeper just started may not have swept yet
        assert watch.check() is None
        clock.now = 61
        warning = watch.check()
        assert warning and "no sweeper is running: no sweep has ever been recorded" in warning
        assert "relay beat" in caplog.text
        assert watch.check() is None  # said once, repeated only every ten minutes
        clock.now = 61 + 601
        assert "no sweep has ever been recorded" in watch.check()

        sweep(network)  # a sweeper runs: the heartbeat is fresh, the warning ends
        with network.sessions() as session:
            assert (utcnow() - last(session, SWEEP)).total_seconds() < 5
        caplog.clear()
        assert watch.check() is None
        assert "the sweeper is running again" in caplog.text

        with transaction(network.sessions) as session:  # and stops: the last sweep is 61 s old
            from relay.infra.heartbeats import mark

            mark(session, SWEEP, utcnow() - timedelta(seconds=61))
        clock.now += 10
        assert "the last sweep was 61 s ago" in watch.check()


def test_the_watch_ticks_once_a_period_and_survives_an_unreachable_database(network):
    from relay.infra.heartbeats import SweeperWatch

    clock = _Clock()
    reads = []

    def sessions():
        reads.append(clock.now)
        raise ConnectionError("database down (test)")

    watch = SweeperWatch(sessions, period=30, clock=clock)
    for second in range(0, 95, 5):
        clock.now = second
        watch.tick()
    assert reads == [30, 60, 90]
