"""Stopping a sent urgent notice (the issue-17 follow-up): no more channel steps, calls or reports, the
deliveries still waiting are cancelled and those already out stay as they are; coordinator/admin only,
audited; the escalation checks the stop under the notice's row lock, so no call is planned after it even
with two workers. And a notice with no author (the CLI's) reports to the coordinators of its lists."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from relay.access.permissions import Forbidden
from relay.infra import audit
from relay.infra.db import transaction
from relay.model.tables import AuditEvent, Delivery, Member, Notice
from relay.model.urgent import EscalationStep
from relay.notices.escalation import escalate
from relay.notices.lifecycle import NoticeStateError, create_notice, send_notice, stop_notice
from relay.providers.twilio_voice import TwilioVoiceSender
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, run_worker
from tests.unit.notices.test_escalation import ALICE, BEN, KIM, LEE, PARK, _at, _steps, urgent  # noqa: F401

STAFF = frozenset({"coordinator", "member"})


def _stop(services, roles=STAFF, actor=audit.SYSTEM):
    with transaction(services.sessions) as session:
        return stop_notice(session, services.notice_id, roles=roles, actor=actor)


def _deliveries(services):
    with services.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_a_stopped_notice_escalates_no_further(urgent, sms, mail, twilio_standin):
    escalate(urgent, _at(urgent, 10.1))  # the emails of step 1 are planned, not yet sent
    out = {d.id: d.status for d in _deliveries(urgent) if d.channel == "sms" and d.status not in ("queued", "held")}
    assert len(out) == 5
    result = _stop(urgent, actor=audit.Actor("cli:root", "cli"))
    assert result.cancelled == 5
    run_worker(urgent)
    assert mail.sent == []  # the waiting emails were cancelled
    for delivery in _deliveries(urgent):
        if delivery.id in out:
            assert delivery.status == out[delivery.id]  # what went out stays as it is
        else:
            assert (delivery.status, delivery.error_code) == ("failed", "cancelled")
    before = _steps(urgent)
    for minutes in (15.1, 20.1, 40):
        assert escalate(urgent, _at(urgent, minutes)) == []
    run_worker(urgent)
    assert _steps(urgent) == before and twilio_standin.calls == []
    with urgent.sessions() as session:
        assert session.get(Notice, urgent.notice_id).status == "stopped"
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "notice.stop"))
        assert event.actor == "cli:root" and event.detail["cancelled"] == 5


def test_a_call_planned_before_the_stop_is_not_placed(urgent, twilio_standin):
    escalate(urgent, _at(urgent, 15.1))  # both steps at once: four calls queued
    _stop(urgent)
    run_worker(urgent)
    assert twilio_standin.calls == []
    calls = [d for d in _deliveries(urgent) if d.purpose == "call"]
    assert calls and {(d.status, d.error_code) for d in calls} == {("failed", "cancelled")}


def test_no_report_after_the_stop(urgent, sms):
    escalate(urgent, _at(urgent, 15.1))
    run_worker(urgent)
    sms.sent.clear()
    _stop(urgent)
    escalate(urgent, _at(urgent, 20.1))
    run_worker(urgent)
    assert sms.sent == []


def test_only_a_coordinator_or_admin_may_stop(urgent):
    with pytest.raises(Forbidden):
        _stop(urgent, roles=frozenset({"member"}))
    with urgent.sessions() as session:
        assert session.get(Notice, urgent.notice_id).status == "sent"
    _stop(urgent, roles=frozenset({"admin"}))
    with pytest.raises(NoticeStateError):  # once is enough: a second stop says so
        _stop(urgent)


def test_a_draft_is_cancelled_not_stopped(network):
    with transaction(network.sessions) as session:
        notice = create_notice(session, kind="announcement", title="t", lists=["tft"])
        with pytest.raises(NoticeStateError, match="cancel"):
            stop_notice(session, notice.id, roles=STAFF, actor=audit.SYSTEM)


def test_the_stop_waits_for_an_escalation_in_progress_and_then_none_follows(urgent, twilio_standin):
    """Two processes: the stop holds the notice's row lock; an escalation sweep started meanwhile waits for
    it, then finds the notice stopped and takes no step (PostgreSQL: SQLite has no concurrent writers)."""
    if urgent.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL only")
    done = threading.Event()
    results: list = []
    with transaction(urgent.sessions) as session:
        stop_notice(session, urgent.notice_id, roles=STAFF, actor=audit.SYSTEM)
        worker = threading.Thread(target=lambda: (results.append(escalate(urgent, _at(urgent, 15.1))), done.set()))
        worker.start()
        assert not done.wait(0.5)  # blocked on the notice's row lock
    worker.join(10)
    assert results == [[]] and _steps(urgent) == set()
    run_worker(urgent)
    assert twilio_standin.calls == []


def test_a_notice_without_author_reports_to_the_coordinators_of_its_lists(network, sms, twilio_standin):
    """The CLI names no member (relay notice create): the ladder's report goes to the coordinators on the
    notice's lists instead of nowhere."""
    voice_settings = network.settings.replace(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                                              twilio_from=OUR_NUMBER, twilio_api_url=twilio_standin.url)
    network.senders["voice"] = TwilioVoiceSender(voice_settings, timeout=5)
    with transaction(network.sessions) as session:
        notice = create_notice(session, kind="announcement", title="Isolation guideline changed", lists=["tft"],
                               severity="urgent", channels="sms", ack_within=timedelta(minutes=10),
                               escalation_step=timedelta(minutes=5))
        notice_id = notice.id
    send_notice(network, notice_id)
    run_worker(network)
    with network.sessions() as session:
        sent_at = session.get(Notice, notice_id).sent_at
    sms.sent.clear()
    escalate(network, sent_at + timedelta(minutes=20.1))
    run_worker(network)
    reports = [m for m in sms.sent if m.to == KIM and str(notice_id) in m.body and "Ben Carter" in m.body]
    assert len(reports) == 1  # Kim is the coordinator on tft; the members are not sent the report
    assert {m.to for m in sms.sent if "Ben Carter" in m.body} == {KIM}
    with network.sessions() as session:
        kim = session.scalar(select(Member).where(Member.phone == KIM))
        assert session.scalar(select(EscalationStep).where(EscalationStep.step == "report")).member_id == kim.id
    escalate(network, sent_at + timedelta(minutes=40))
    run_worker(network)
    assert len([m for m in sms.sent if m.to == KIM and "Ben Carter" in m.body]) == 1  # once


def test_the_cli_api_and_console_stop_a_sent_notice(urgent, settings, monkeypatch):
    """`relay notice stop N`, POST /api/v1/notices/<id>/stop and the console's button: each a shell over
    stop_notice; a second stop is refused (422/409, exit 1), a member may not stop (console: 403)."""
    from click.testing import CliRunner

    from relay.cli import main
    from tests.console_helpers import csrf, give_password, reads_english, sign_in
    from webhooks.app import create_app

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    escalate(urgent, _at(urgent, 10.1))
    result = CliRunner().invoke(main, ["notice", "stop", str(urgent.notice_id)])
    assert result.exit_code == 0 and "stopped" in result.output and "5 waiting" in result.output, result.output
    again = CliRunner().invoke(main, ["notice", "stop", str(urgent.notice_id)])
    assert again.exit_code != 0 and "already stopped" in again.output

    with transaction(urgent.sessions) as session:  # two more sent notices, for the API and the console
        ids = []
        for title in ("API", "Console"):
            ids.append(create_notice(session, kind="announcement", title=title, lists=["tft"], channels="email").id)
    for notice_id in ids:
        send_notice(urgent, notice_id)
    urgent.settings = urgent.settings.replace(api_token="t0ken")
    app = create_app(services=urgent)
    api = app.test_client()
    auth = {"Authorization": "Bearer t0ken"}
    response = api.post(f"/api/v1/notices/{ids[0]}/stop", headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "stopped" and response.get_json()["cancelled"] == 5
    assert api.post(f"/api/v1/notices/{ids[0]}/stop", headers=auth).status_code == 422
    assert api.post(f"/api/v1/notices/{ids[1]}/stop").status_code == 401

    give_password(urgent, "minho@example.org")
    member_client = reads_english(app.test_client())
    sign_in(member_client, "minho@example.org")
    assert member_client.post(f"/console/notices/{ids[1]}/stop",
                              data={"csrf_token": csrf(member_client)}).status_code == 403
    give_password(urgent, "jiwon@example.org")
    client = reads_english(app.test_client())
    sign_in(client, "jiwon@example.org")
    token = csrf(client)
    page = client.get(f"/console/notices/{ids[1]}").get_data(as_text=True)
    assert f'action="/console/notices/{ids[1]}/stop"' in page
    assert client.post(f"/console/notices/{ids[1]}/stop", data={"csrf_token": token}).status_code == 302
    page = client.get(f"/console/notices/{ids[1]}").get_data(as_text=True)
    assert "/stop" not in page.split("<h2>")[0] and "stopped" in page
    assert client.post(f"/console/notices/{ids[1]}/stop", data={"csrf_token": token}).status_code == 409
    with urgent.sessions() as session:
        assert [session.get(Notice, i).status for i in ids] == ["stopped", "stopped"]
        actors = [e.source for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "notice.stop")
                                                    .order_by(AuditEvent.id))]
    assert actors == ["cli", "api", "console"]


def test_a_stopped_notice_can_still_be_corrected(urgent, sms):
    """Stopping takes nothing back: a correction ("disregard: sent by mistake") goes to those who got it."""
    from relay.notices.corrections import correct_notice

    _stop(urgent)
    sms.sent.clear()
    result = correct_notice(urgent, urgent.notice_id, "Sent by mistake: please disregard.")
    run_worker(urgent)
    assert result.recipients == 5 and len([m for m in sms.sent if "disregard" in m.body]) == 5
