"""Outbound SMS over real HTTP to the Twilio API stand-in: claims, retries, opt-outs, failures."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import ConsentEvent, Delivery, utcnow
from relay.outbound.deliveries import claim
from relay.outbound.fanout import plan
from relay.outbound.sending import send_delivery
from relay.providers.twilio_sms import TwilioSmsSender
from relay.render.texts import SMS_MAX_CHARS, fit_sms
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, make_settings
from tests.helpers import deliveries, member

LEE = "+821012345602"


@pytest.fixture
def twilio_services(tmp_path, database_url, twilio_standin):
    settings = make_settings(tmp_path / "var", database_url, twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url, max_send_attempts=3)
    services = build_services(settings, dispatcher=RecordingDispatcher())
    assert isinstance(services.sender("sms"), TwilioSmsSender)
    from relay.members.directory import import_members

    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
    yield services
    services.dispose()


def make_delivery(services, to=LEE, body="C1 Kim: hello", key="test:1") -> int:
    with transaction(services.sessions) as session:
        who = member(services, to)
        return plan(session, [{"dedupe_key": key, "purpose": "relay", "member_id": who.id if who else None,
                               "to_address": to, "body": body}])[0]


def test_send_goes_through_the_twilio_client(twilio_services, twilio_standin):
    delivery_id = make_delivery(twilio_services)
    assert send_delivery(twilio_services, delivery_id).result == "sent"
    [request] = twilio_standin.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.form["To"] == LEE and request.form["From"] == OUR_NUMBER
    assert request.form["Body"] == "C1 Kim: hello"
    assert request.form["StatusCallback"] == "https://relay.example.org/webhooks/twilio/status"
    [row] = deliveries(twilio_services)
    assert row.status == "accepted" and row.provider_message_id.startswith("SM") and row.attempts == 1


def test_messaging_service_sid_is_sent_as_messaging_service(tmp_path, database_url, twilio_standin):
    settings = make_settings(tmp_path / "var", database_url, twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from="MG" + "2" * 32,
                             twilio_api_url=twilio_standin.url)
    services = build_services(settings, dispatcher=RecordingDispatcher())
    delivery_id = make_delivery(services)
    send_delivery(services, delivery_id)
    form = twilio_standin.requests[0].form
    assert form["MessagingServiceSid"] == "MG" + "2" * 32 and "From" not in form
    services.dispose()


def test_a_redelivered_task_never_sends_twice(twilio_services, twilio_standin):
    delivery_id = make_delivery(twilio_services)
    assert send_delivery(twilio_services, delivery_id).result == "sent"
    assert send_delivery(twilio_services, delivery_id).result == "skipped"
    assert len(twilio_standin.requests) == 1


def test_only_one_claim_wins(twilio_services):
    delivery_id = make_delivery(twilio_services)
    with transaction(twilio_services.sessions) as session:
        assert claim(session, delivery_id, timedelta(minutes=2))
    with transaction(twilio_services.sessions) as session:
        assert not claim(session, delivery_id, timedelta(minutes=2))


def test_an_expired_lease_can_be_claimed_again(twilio_services):
    delivery_id = make_delivery(twilio_services)
    with transaction(twilio_services.sessions) as session:
        assert claim(session, delivery_id, timedelta(seconds=-1))  # a worker died mid-send
    with transaction(twilio_services.sessions) as session:
        assert claim(session, delivery_id, timedelta(minutes=2))


@pytest.mark.parametrize("status,code,result,attempts", [(429, 20429, "deferred", 0), (500, None, "retry", 1),
                                                         (503, None, "retry", 1)])
def test_throttling_and_server_errors_retry_with_backoff(twilio_services, twilio_standin, status, code, result,
                                                         attempts):
    """A 429 with Retry-After (the stand-in sends one) is a throttle, not an attempt
    (tests/unit/outbound/test_deferral.py)."""
    delivery_id = make_delivery(twilio_services)
    twilio_standin.fail_next(status, code)
    outcome = send_delivery(twilio_services, delivery_id)
    assert outcome.result == result and outcome.retry_in > 0
    [row] = deliveries(twilio_services)
    assert row.status == "queued" and row.next_attempt_at > utcnow() and row.attempts == attempts
    assert twilio_services.dispatcher.deliveries == [delivery_id]  # re-queued with a countdown
    # Not before its time ...
    assert send_delivery(twilio_services, delivery_id).result == "skipped"
    # ... and once due, it goes.
    with transaction(twilio_services.sessions) as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))
    assert send_delivery(twilio_services, delivery_id).result == "sent"
    assert len(twilio_standin.accepted) == 1


def test_timeouts_retry(tmp_path, database_url, twilio_standin):
    settings = make_settings(tmp_path / "var", database_url, twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url)
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": TwilioSmsSender(settings, timeout=0.3)})
    twilio_standin.fail_next(201, delay=1.0)
    outcome = send_delivery(services, make_delivery(services))
    assert outcome.result == "retry"
    assert deliveries(services)[0].error_code == "network"
    services.dispose()


def test_retries_stop_at_the_limit(twilio_services, twilio_standin):
    delivery_id = make_delivery(twilio_services)
    for attempt in range(3):
        twilio_standin.fail_next(500)
        with transaction(twilio_services.sessions) as session:
            session.execute(update(Delivery).values(next_attempt_at=None))
        outcome = send_delivery(twilio_services, delivery_id)
    assert outcome.result == "failed"
    [row] = deliveries(twilio_services)
    assert row.status == "failed" and "gave up after 3 attempts" in row.error_message


def test_21610_marks_the_member_opted_out(twilio_services, twilio_standin):
    twilio_standin.fail_to(LEE, 400, 21610, "Attempt to send to unsubscribed recipient")
    delivery_id = make_delivery(twilio_services)
    assert send_delivery(twilio_services, delivery_id).result == "opted_out"
    [row] = deliveries(twilio_services)
    assert row.status == "opted_out" and row.error_code == "21610"
    assert member(twilio_services, LEE).sms_opted_out_at is not None
    with twilio_services.sessions() as session:
        log = session.scalars(select(ConsentEvent)).all()
    assert [(e.channel, e.action, e.source) for e in log] == [("sms", "opt_out", "provider:21610")]
    assert twilio_services.dispatcher.deliveries == []  # not retried


@pytest.mark.parametrize("code", [21211, 21614, 21408])
def test_permanent_errors_fail_at_once_with_the_code(twilio_services, twilio_standin, code):
    twilio_standin.fail_to(LEE, 400, code, "bad number")
    delivery_id = make_delivery(twilio_services)
    assert send_delivery(twilio_services, delivery_id).result == "failed"
    [row] = deliveries(twilio_services)
    assert row.status == "failed" and row.error_code == str(code)
    assert len(twilio_standin.requests) == 1


def test_long_bodies_are_shortened_not_rejected(twilio_services, twilio_standin):
    url = "https://relay.example.org/library/cases/C1"
    body = fit_sms("C1 Kim: " + "word " * 500, url)
    assert len(body) <= SMS_MAX_CHARS and body.endswith(f"(full text: {url})")
    send_delivery(twilio_services, make_delivery(twilio_services, body=body))
    assert len(twilio_standin.accepted[0].form["Body"]) <= 1600
