"""The sweeper re-dispatches what was committed but never queued, or never finished."""
from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import update

from relay.db import transaction
from relay.deliveries import claim
from relay.fanout import plan
from relay.models import Delivery, InboundEvent, utcnow
from relay.sweeper import sweep

from .conftest import run_worker
from .helpers import deliveries, event, record_sms


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
    from relay import processing
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
    from relay.inbound import record_inbound

    with transaction(network.sessions) as session:
        event_id = record_inbound(session, provider="postmark", kind="email", dedupe_key="mid:x@example.org",
                                  raw="", payload=b'{"FromFull": {"Email": "nobody@example.org"}}',
                                  content_type="application/json").event_id
    age(network, InboundEvent)
    assert sweep(network).inbound == 1
    run_worker(network)
    assert event(network, event_id).processed_at is not None


# ---------------------------------------------------------------- the sweeper's heartbeat (issue 13, item 9)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_warns_when_no_sweeper_has_run_for_two_periods(network, caplog):
    """relay worker's watch (relay/heartbeats.py) reads the heartbeat every sweep() records."""
    import logging

    from relay.heartbeats import SWEEP, SweeperWatch, last

    clock = _Clock()
    watch = SweeperWatch(network.sessions, period=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="relay.heartbeats"):
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
            from relay.heartbeats import mark

            mark(session, SWEEP, utcnow() - timedelta(seconds=61))
        clock.now += 10
        assert "the last sweep was 61 s ago" in watch.check()


def test_the_watch_ticks_once_a_period_and_survives_an_unreachable_database(network):
    from relay.heartbeats import SweeperWatch

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
