"""A rate limit saying "not now" is not a failed attempt (relay/outbound/sending.py `_defer`, relay/infra/ratelimit.py
`take_slot`): over the real Twilio stand-in and the shared Redis limiter, a sender far over its rate
books each delivery a slot and every delivery goes out in its turn, however few attempts are allowed;
a provider's 429 waits out its Retry-After; the deadline (RELAY_MAX_DEFER_HOURS, a notice's expiry)
fails a delivery with a clear reason, without booking a slot it cannot use; batches defer the same
way; and the sweeper queues a delivery for its slot, never earlier.

The limiter's max_wait is 0 here (every later slot is a deferral), so the rates stay small and no test
waits more than a few seconds."""
from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.infra.ratelimit import SLOT_LEAD, RateLimited, RedisRateLimiter
from relay.infra.settings import Settings, SettingsError
from relay.members.directory import import_members
from relay.model.tables import Delivery, Notice, utcnow
from relay.notices.lifecycle import create_notice, send_notice
from relay.outbound.bulk import send_batch
from relay.outbound.fanout import plan
from relay.outbound.queueing import DISPATCH_AHEAD
from relay.outbound.sending import send_delivery
from relay.providers.twilio_sms import TwilioSmsSender
from relay.services import build_services
from relay.sweeper import sweep
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, RecordingSender, make_settings
from tests.helpers import deliveries

BEN = "+12025550105"


class TimedDispatcher(RecordingDispatcher):
    """Also keeps when each single delivery task may run, as Celery's countdown would: (due, id)."""

    def __init__(self):
        super().__init__()
        self.timed: list[tuple[float, int]] = []
        self.countdowns: list[float | None] = []

    def deliver(self, delivery_ids, countdown=None):
        super().deliver(delivery_ids, countdown)
        for delivery_id in delivery_ids:
            self.timed.append((time.time() + (countdown or 0), delivery_id))
            self.countdowns.append(countdown)


def run_until_done(services, timeout: float = 20.0) -> list[str]:
    """A worker honouring countdowns: runs each queued delivery once its countdown is over."""
    dispatcher = services.dispatcher
    results = []
    give_up = time.time() + timeout
    while dispatcher.timed:
        assert time.time() < give_up, "deliveries still queued"
        dispatcher.timed.sort()
        due, delivery_id = dispatcher.timed[0]
        if due > time.time():
            time.sleep(min(0.02, due - time.time()))
            continue
        dispatcher.timed.pop(0)
        results.append(send_delivery(services, delivery_id).result)
    return results


@pytest.fixture
def limiter(redis_url):
    return RedisRateLimiter.from_url(redis_url, prefix=f"test-defer-{secrets.token_hex(4)}:", max_wait=0.0)


@pytest.fixture
def make_services(tmp_path, database_url, twilio_standin, limiter):
    built = []

    def make(**overrides):
        values = dict(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER,
                      twilio_api_url=twilio_standin.url, sms_rate="long_code", max_send_attempts=2)
        values.update(overrides)
        settings = make_settings(tmp_path / "var", database_url, **values)
        services = build_services(settings, dispatcher=TimedDispatcher(),
                                  senders={"sms": TwilioSmsSender(settings, limiter=limiter),
                                           "email": RecordingSender()})
        with transaction(services.sessions) as session:
            import_members(session, DEMO_CSV)
        built.append(services)
        return services

    yield make
    for services in built:
        services.dispose()


def relays(services, count: int) -> list[int]:
    with transaction(services.sessions) as session:
        return plan(session, [{"dedupe_key": f"test:{i}", "purpose": "relay", "member_id": None,
                               "to_address": f"+1202555{i:04d}", "body": f"C1 Kim: message {i}"}
                              for i in range(count)])


def sms_notice(services, lists=("us",), **fields) -> list[int]:
    with transaction(services.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Ward rounds moved", body="text",
                                  lists=list(lists), channels="sms", **fields).id
    send_notice(services, notice_id)
    return [i for batch in services.dispatcher.batches for i in batch]


def fill_timeline(limiter, sender, seconds: float) -> None:
    """Other senders' traffic: book the sender's slots until its next free one is `seconds` away."""
    while limiter.reserve(sender.rate_key, sender.rate, max_wait=3600) + sender.rate.interval < seconds:
        pass


def next_slot_in(limiter, sender) -> float:
    """How far the sender's next free slot is, without booking it."""
    with pytest.raises(RateLimited) as refused:
        limiter.reserve(sender.rate_key, sender.rate, max_wait=0)
    return refused.value.retry_after


def test_a_long_code_far_over_its_rate_sends_everything_in_turn_without_using_attempts(
        make_services, twilio_standin, caplog):
    services = make_services()  # 1 SMS a second; 2 attempts allowed, 4 messages at once
    ids = relays(services, 4)
    caplog.set_level(logging.INFO, logger="relay.outbound.sending")
    first = [send_delivery(services, i).result for i in ids]
    assert first == ["sent", "deferred", "deferred", "deferred"]
    waiting = [d for d in deliveries(services) if d.status == "queued"]
    assert [d.attempts for d in waiting] == [0, 0, 0]  # a deferral is not an attempt
    assert {d.error_code for d in waiting} == {"rate_limited"}
    assert all(d.error_message.startswith("waiting for the rate limit") and d.lease_until is None for d in waiting)
    booked = [d.next_attempt_at + timedelta(seconds=SLOT_LEAD) for d in waiting]
    gaps = [(b - a).total_seconds() for a, b in zip(booked, booked[1:])]
    assert all(1.0 <= g <= 1.1 for g in gaps), gaps  # one slot each, 1.05 s apart: no two share a slot
    assert len([r for r in caplog.records if "deferred by the rate limit for" in r.getMessage()
                and r.levelno == logging.INFO]) == 3

    assert run_until_done(services) == ["sent", "sent", "sent"]
    rows = deliveries(services)
    assert [(d.status, d.attempts) for d in rows] == [("accepted", 1)] * 4  # none failed, one attempt each
    arrivals = sorted(r.at for r in twilio_standin.accepted)
    assert len(arrivals) == 4
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.95  # still at most 1 a second


def test_a_429_with_retry_after_waits_that_long_without_using_an_attempt(make_services, twilio_standin):
    services = make_services(sms_rate="100", max_send_attempts=1)  # one attempt: any counted retry would fail
    [delivery_id] = relays(services, 1)
    twilio_standin.fail_next(429, 20429, "Too Many Requests")  # the stand-in answers Retry-After: 1
    before = utcnow()
    outcome = send_delivery(services, delivery_id)
    after = utcnow()
    assert outcome.result == "deferred"
    [row] = deliveries(services)
    assert (row.status, row.attempts, row.error_code, row.lease_until) == ("queued", 0, "throttled", None)
    assert "Twilio 429 20429" in row.error_message and "not counted as an attempt" in row.error_message
    # Retry-After (1 s) and at most 10 % jitter, from the moment the answer was handled, which lies between
    # `before` and `after` (the send itself may take a while on a loaded machine: the first client is built)
    assert (row.next_attempt_at - before).total_seconds() >= 1.0
    assert (row.next_attempt_at - after).total_seconds() <= 1.1
    # not before its time: the claim refuses it, and the sweeper does not queue it early
    assert send_delivery(services, delivery_id).result == "skipped"
    assert sweep(services).deliveries == 0
    time.sleep(max(0.0, (row.next_attempt_at - utcnow()).total_seconds()) + 0.05)
    assert send_delivery(services, delivery_id).result == "sent"
    [row] = deliveries(services)
    assert (row.status, row.attempts) == ("accepted", 1)
    assert [r.status for r in twilio_standin.requests] == [429, 201]


def test_past_the_deadline_it_fails_with_a_clear_reason_and_books_nothing(make_services, twilio_standin, limiter):
    services = make_services(max_defer_hours=1)
    sender = services.sender("sms")
    fill_timeline(limiter, sender, 1.0)  # the next slot is a second away
    old, new = relays(services, 2)
    with transaction(services.sessions) as session:  # queued 59 min 59.5 s ago: half a second left
        session.execute(update(Delivery).where(Delivery.id == old)
                        .values(created_at=utcnow() - timedelta(hours=1) + timedelta(seconds=0.5)))
    assert send_delivery(services, old).result == "failed"
    row = deliveries(services, id=old)[0]
    assert (row.status, row.error_code) == ("failed", "rate_limited")
    assert row.error_message.startswith("rate limited for more than 1 hour (RELAY_MAX_DEFER_HOURS): ")
    assert next_slot_in(limiter, sender) <= 1.1  # no slot was booked for it
    assert send_delivery(services, new).result == "deferred"  # the control: within its deadline, it waits
    assert twilio_standin.requests == []


def test_a_notice_expiring_before_the_slot_fails_at_once_and_books_nothing(make_services, limiter):
    services = make_services()
    sender = services.sender("sms")
    fill_timeline(limiter, sender, 60)  # a minute of other traffic ahead
    free_at = time.time() + next_slot_in(limiter, sender)  # when the next free slot is (asking books nothing)
    assert free_at - time.time() >= 58  # the minute ahead, less the time asking took
    [delivery_id] = sms_notice(services, expires_at=utcnow() + timedelta(seconds=30))
    assert send_delivery(services, delivery_id).result == "expired"
    [row] = deliveries(services)
    assert (row.status, row.error_code) == ("failed", "expired")
    assert "before a sending slot; not sent late" in row.error_message
    # unchanged: nothing booked (a booking would move it a whole second, the long code's interval); read as a
    # time, not as "seconds from now", so a slow machine's elapsed seconds do not count (CI: 58.8 s left)
    assert abs(time.time() + next_slot_in(limiter, sender) - free_at) < 0.5


def test_a_deferred_notice_that_expires_while_waiting_is_not_sent(make_services, limiter, twilio_standin):
    services = make_services()
    fill_timeline(limiter, services.sender("sms"), 5)
    [delivery_id] = sms_notice(services, expires_at=utcnow() + timedelta(hours=1))
    assert send_delivery(services, delivery_id).result == "deferred"
    with transaction(services.sessions) as session:  # the notice expired while it waited for its slot
        session.execute(update(Notice).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert send_delivery(services, delivery_id).result == "expired"
    [row] = deliveries(services)
    assert (row.status, row.error_code) == ("failed", "expired")
    assert twilio_standin.requests == []


def test_a_batch_defers_the_same_way(make_services, twilio_standin):
    services = make_services(sms_rate="4", max_send_attempts=1)  # a slot every 0.26 s; one attempt each
    batch = sms_notice(services, lists=("tft",))
    assert len(batch) == 5
    report = send_batch(services, batch)
    assert (report.sent, report.deferred, report.failed, report.retry) == (1, 4, 0, 0)
    waiting = [d for d in deliveries(services) if d.status == "queued"]
    assert [(d.attempts, d.error_code) for d in waiting] == [(0, "rate_limited")] * 4
    assert set(run_until_done(services)) <= {"sent", "deferred"}  # one that missed its slot books another
    assert [(d.status, d.attempts) for d in deliveries(services)] == [("accepted", 1)] * 5
    arrivals = sorted(r.at for r in twilio_standin.accepted)
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.12  # paced (half a slot at worst), not bunched


def test_a_far_slot_is_queued_by_the_sweeper_just_before_it_and_never_early(make_services, limiter):
    services = make_services()
    dispatcher = services.dispatcher
    fill_timeline(limiter, services.sender("sms"), 300)  # five minutes of other traffic ahead
    [delivery_id] = relays(services, 1)
    assert send_delivery(services, delivery_id).result == "deferred"
    assert dispatcher.timed == []  # too far for a broker countdown: left to the sweeper
    [row] = deliveries(services)
    due = row.next_attempt_at
    assert 290 <= (due - utcnow()).total_seconds() <= 310
    assert row.dispatched_at < due
    assert sweep(services).booked == 0  # not yet within DISPATCH_AHEAD
    with time_machine.travel(due - DISPATCH_AHEAD + timedelta(seconds=20), tick=False):
        assert send_delivery(services, delivery_id).result == "skipped"  # not due: the claim refuses it
        report = sweep(services)
        assert (report.booked, report.deliveries) == (1, 0)
        assert dispatcher.countdowns == [100]  # a countdown to the time it may be claimed
        assert sweep(services).booked == 0  # queued once
    with time_machine.travel(due + timedelta(seconds=30), tick=False):
        assert sweep(services).deliveries == 0  # its task is due now; nothing queued twice
    with time_machine.travel(due + timedelta(seconds=90), tick=False):
        assert sweep(services).deliveries == 1  # that task was lost: the sweeper recovers it as usual


def test_the_deferral_deadline_setting():
    assert Settings.from_env({}).max_defer_hours == 48
    assert Settings.from_env({"RELAY_MAX_DEFER_HOURS": "6"}).max_defer_hours == 6
    with pytest.raises(SettingsError, match="RELAY_MAX_DEFER_HOURS"):
        Settings.from_env({"RELAY_MAX_DEFER_HOURS": "0"})


def test_the_notice_status_says_how_many_wait_for_the_rate_limit(make_services, limiter, monkeypatch):
    from click.testing import CliRunner

    from relay.cli import main
    from relay.notices.status import live_counts

    services = make_services()
    fill_timeline(limiter, services.sender("sms"), 5)
    [delivery_id] = sms_notice(services)
    assert send_delivery(services, delivery_id).result == "deferred"
    with services.sessions() as session:
        notice = session.scalars(select(Notice)).one()
        counts = live_counts(session, notice)
    assert (counts["rate_limited"], counts["queued"], counts["failed"]) == (1, 1, 0)
    for name, value in (("DATABASE_URL", services.settings.database_url), ("BROKER_URL", "memory://"),
                        ("VAR_DIR", str(services.settings.var_dir))):
        monkeypatch.setenv(f"RELAY_{name}", value)
    result = CliRunner().invoke(main, ["notice", "status", str(notice.id)])
    assert result.exit_code == 0, result.output
    assert "sms: queued 1" in result.output and "queued waiting for the rate limit: 1 (the last due " in result.output
