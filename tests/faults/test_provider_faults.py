"""Provider faults: transient refusals are retried with jittered backoff up to a limit and then fail
with the reason kept; an error burst pauses the notice and alerts the coordinators once.

Twilio's 429/5xx/timeouts and 4xx are covered over real HTTP in tests/unit/outbound/test_sending.py, SMTP 451/550
in tests/unit/outbound/test_email.py; this file adds SMTP 421, the SMTP retry limit, the jitter, and the
burst pause (real Twilio stand-in and aiosmtpd sink; the queue is the recording dispatcher)."""
from __future__ import annotations

import collections
import statistics

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import AuditEvent, Delivery, Member, Notice
from relay.notices.lifecycle import new_case_notice
from relay.outbound import bursts
from relay.outbound.sending import backoff_seconds, send_delivery
from relay.providers.smtp_email import SmtpEmailSender
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, make_settings, run_worker
from tests.standins.smtp_sink import SmtpSink

from .conftest import report
from .seeding import phone_of, seed_members

MEMBERS = 60
COORDINATORS = 2
MIN_FAILURES = 20


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def provider_services(tmp_path, database_url, twilio_standin, smtp_sink):
    settings = make_settings(tmp_path / "var", database_url, twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER, twilio_api_url=twilio_standin.url,
                             smtp_url=smtp_sink.url, mail_from="cases@relay.example.org", secret_key="test-secret",
                             max_send_attempts=3, pause_min_failures=MIN_FAILURES, pause_failure_share=0.5,
                             sms_rate="0")  # pacing is tested in tests/unit/outbound/test_deferral.py; here it only waits
    services = build_services(settings, dispatcher=RecordingDispatcher())
    assert isinstance(services.sender("email"), SmtpEmailSender)
    seed_members(services, MEMBERS, coordinators=COORDINATORS)
    with transaction(services.sessions) as session:  # coordinators also take email
        for member in session.scalars(select(Member).where(Member.roles.like("coordinator%"))):
            member.email, member.email_discussion = f"coordinator{member.id}@example.org", True
    yield services
    services.sender("email").close()
    services.dispose()


def test_backoff_is_exponential_with_full_jitter():
    samples = {attempt: [backoff_seconds(attempt) for _ in range(200)] for attempt in (1, 4, 12)}
    assert all(2.0 <= s <= 4.0 for s in samples[1])
    assert all(2.0 <= s <= 32.0 for s in samples[4])
    assert all(s <= 600.0 for s in samples[12])  # capped
    assert len(set(samples[4])) > 150  # jitter: a burst of failures does not retry in lockstep
    assert statistics.mean(samples[4]) > statistics.mean(samples[1])


def test_smtp_421_retries_until_the_limit_then_fails_with_the_reply(provider_services, smtp_sink):
    services = provider_services
    with transaction(services.sessions) as session:
        coordinator = session.scalar(select(Member).where(Member.email.is_not(None)).order_by(Member.id))
        address = coordinator.email
    smtp_sink.refuse[address] = "421 4.7.0 Too many connections, try again later"
    new_case_notice(services, "C1", ["all"])
    with services.sessions() as session:
        delivery_id = session.scalar(select(Delivery.id).where(Delivery.to_address == address))
    outcomes = []
    for _ in range(3):  # max_send_attempts=3
        with transaction(services.sessions) as session:
            session.execute(update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=None))
        outcome = send_delivery(services, delivery_id)
        outcomes.append((outcome.result, outcome.retry_in is not None and outcome.retry_in >= 2.0))
    with services.sessions() as session:
        row = session.get(Delivery, delivery_id)
    report("smtp_421", attempts=row.attempts, outcomes=[o for o, _ in outcomes], status=row.status)
    assert outcomes == [("retry", True), ("retry", True), ("failed", False)]
    assert (row.status, row.error_code, row.attempts) == ("failed", "421", 3)
    assert row.error_message.startswith("gave up after 3 attempts: SMTP 421")
    assert smtp_sink.received == [] or all(address not in r.rcpt_tos for r in smtp_sink.received)


def test_an_error_burst_pauses_the_notice_and_alerts_coordinators_once(provider_services, twilio_standin,
                                                                       smtp_sink):
    services = provider_services
    failing = [phone_of(n) for n in range(COORDINATORS, MEMBERS)]
    for phone in failing:  # the provider refuses every member but the coordinators
        twilio_standin.fail_to(phone, 503, None, "Service Unavailable")
    result = new_case_notice(services, "C1", ["all"])
    assert result.sms == MEMBERS and result.emails == COORDINATORS
    run_worker(services)  # sends until the queue is empty (retries wait for their time)

    with services.sessions() as session:
        notice = session.get(Notice, result.notice_id)
        statuses = collections.Counter(session.scalars(select(Delivery.status).where(Delivery.purpose == "notice")))
        alerts = list(session.scalars(select(Delivery).where(Delivery.purpose == "alert")))
        pauses = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "notice.pause")))
    tried = collections.Counter(r.form["To"] for r in twilio_standin.requests if r.form["To"] in failing)
    alert_sms = [r for r in twilio_standin.accepted if "paused" in r.form["Body"]]
    alert_mail = [r for r in smtp_sink.received if b"paused" in r.data]
    report("error_burst", notice_sends=MEMBERS + COORDINATORS, failing_numbers=len(failing),
           provider_calls_to_failing=sum(tried.values()), statuses=dict(statuses), alerts=len(alerts),
           alert_sms=len(alert_sms), alert_mail=len(alert_mail))
    assert notice.status == "paused"
    assert sum(tried.values()) == MIN_FAILURES  # stopped at the burst, not after burning through the list
    assert statuses["held"] == len(failing)  # waiting ones and those waiting for a retry
    assert statuses["held"] + statuses["accepted"] == MEMBERS + COORDINATORS
    assert sorted((a.channel, a.status) for a in alerts) == [("email", "accepted")] * 2 + [("sms", "accepted")] * 2
    assert len(alert_sms) == COORDINATORS and len(alert_mail) == COORDINATORS
    assert "relay notice resume" in alert_sms[0].form["Body"]
    assert len(pauses) == 1 and pauses[0].subject == f"notice:{notice.id}"
    assert pauses[0].detail["failures"] >= MIN_FAILURES and pauses[0].detail["held"] > 0

    # More failures (a task that was already running) neither pause again nor alert again.
    assert bursts.check_burst(services, notice.id) is False

    # The provider recovers; the coordinator resumes; everything goes out once.
    twilio_standin.faults_by_to.clear()
    with pytest.raises(bursts.NoticeNotPaused):
        bursts.resume(services, notice.id + 1000)
    assert bursts.resume(services, notice.id) == len(failing)
    run_worker(services)
    with services.sessions() as session:
        final = collections.Counter(session.scalars(select(Delivery.status).where(Delivery.purpose == "notice")))
        resumed = session.scalars(select(AuditEvent).where(AuditEvent.action == "notice.resume")).all()
        assert session.get(Notice, notice.id).status == "sent"
    accepted_to = collections.Counter(r.form["To"] for r in twilio_standin.accepted if "paused" not in r.form["Body"])
    report("error_burst_resumed", final=dict(final), duplicated=sum(n - 1 for n in accepted_to.values() if n > 1))
    assert final == {"accepted": MEMBERS + COORDINATORS}
    assert set(accepted_to) == {phone_of(n) for n in range(MEMBERS)} and max(accepted_to.values()) == 1
    assert len(resumed) == 1 and resumed[0].detail == {"resumed": len(failing)}


def test_relay_notice_resume_on_the_command_line(network, settings, monkeypatch):
    from click.testing import CliRunner

    from relay.cli import main

    result = new_case_notice(network, "C1", ["tft"])
    with transaction(network.sessions) as session:
        session.execute(update(Notice).values(status="paused"))
        session.execute(update(Delivery).where(Delivery.purpose == "notice").values(status="held"))
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    first = CliRunner().invoke(main, ["notice", "resume", str(result.notice_id)])
    assert first.exit_code == 0, first.output
    assert f"notice {result.notice_id} resumed: {result.sms + result.emails} deliveries back in the queue" in first.output
    again = CliRunner().invoke(main, ["notice", "resume", str(result.notice_id)])
    assert again.exit_code != 0 and "not paused" in again.output
    with network.sessions() as session:
        assert set(session.scalars(select(Delivery.status).where(Delivery.purpose == "notice"))) == {"queued"}
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("notice.%"))).all()
    assert sorted(actions) == ["notice.resume", "notice.send"]
