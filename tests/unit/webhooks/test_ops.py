"""Health, metrics, the case page and the dev outbox."""
from __future__ import annotations

import pytest

from relay.infra.dispatch import RecordingDispatcher
from relay.notices.lifecycle import new_case_notice
from relay.providers.outbox import OutboxSender
from relay.services import build_services
from tests.conftest import make_settings, run_worker
from tests.helpers import record_sms
from webhooks.app import create_app


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_healthz_reports_a_dead_database(tmp_path):
    settings = make_settings(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app(services=build_services(settings, dispatcher=RecordingDispatcher(), senders={}))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("error")


def test_healthz_reports_a_dead_broker(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, broker_url="redis://127.0.0.1:1/0")
    app = create_app(services=build_services(settings, senders={}))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"].startswith("error")


def test_metrics_count_inbound_relayed_and_deliveries(client, network):
    new_case_notice(network, "C1", ["tft"])
    record_sms(network, "+821012345602", "C1 hello")
    run_worker(network)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'relay_inbound_events{kind="sms",outcome="posted"} 1.0' in text
    assert "relay_relayed_messages_total 8.0" in text  # 4 followers, by SMS and by email
    assert 'relay_deliveries{channel="sms",purpose="notice",status="accepted"} 5.0' in text
    assert 'relay_deliveries{channel="email",purpose="notice",status="accepted"} 5.0' in text
    assert "relay_task_seconds" in text and "relay_inbound_latency_seconds" in text


def test_metrics_need_the_bearer_token_when_one_is_set(network):
    network.settings = network.settings.replace(metrics_token="s3cret-metrics-token")
    client = create_app(services=network).test_client()
    assert client.get("/metrics").status_code == 401
    for wrong in ("Bearer nope", "Basic czNjcmV0", "Bearer s3cret-metrics-token2", "s3cret-metrics-token"):
        response = client.get("/metrics", headers={"Authorization": wrong})
        assert response.status_code == 401 and "relay_deliveries" not in response.get_data(as_text=True)
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert ok.status_code == 200 and "relay_relayed_messages_total" in ok.get_data(as_text=True)


def test_metrics_cache_database_counts_for_a_few_seconds(network):
    from relay.infra.metrics import DatabaseCounts

    now = [1000.0]
    counts = DatabaseCounts(network.sessions, ttl=5, clock=lambda: now[0])
    first = counts.rows()
    new_case_notice(network, "C1", ["tft"])
    assert counts.rows() is first  # within the ttl: no query
    now[0] += 5.1
    assert counts.rows() is not first and counts.rows()[2]  # deliveries counted after it
    network.settings = network.settings.replace(metrics_cache_seconds=30)
    client = create_app(services=network).test_client()
    before = client.get("/metrics").get_data(as_text=True)
    record_sms(network, "+821012345602", "C1 hello")
    run_worker(network)
    assert client.get("/metrics").get_data(as_text=True).count("relay_inbound_events{") == before.count(
        "relay_inbound_events{")  # the cached counts, not a new query


def test_case_page_shows_the_discussion_escaped(client, network):
    new_case_notice(network, "C1", ["tft"])
    record_sms(network, "+821012345602", "C1 <script>alert(1)</script> looks like OP")
    run_worker(network)
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert "Fever and ground-glass opacities" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; looks like OP" in page and "<script>" not in page
    assert "Lee Minho" in page and "SMS" in page
    assert client.get("/library/cases/C99").status_code == 404
    assert "C1" in client.get("/library/").get_data(as_text=True)


def _outbox_services(network, **overrides):
    """The network's database, SMS to the dev outbox (no provider), and `overrides` in its settings."""
    from relay.model.messages import OutboundMessage

    settings = network.settings.replace(public_base_url="http://127.0.0.1:8000", **overrides)
    services = build_services(settings, dispatcher=RecordingDispatcher(), engine=network.engine,
                              senders={"sms": OutboxSender(settings), "email": OutboxSender(settings)})
    services.sender("sms").send(OutboundMessage(7, "sms", "+821012345602", "C1 Kim: <b>hi</b>"))
    return services


def test_dev_outbox_is_404_without_the_flag_even_with_no_provider(network):
    from tests.console_helpers import ADMIN, give_password, sign_in

    client = create_app(services=_outbox_services(network)).test_client()
    assert client.get("/dev/outbox").status_code == 404
    give_password(network, ADMIN, roles="admin;member")
    sign_in(client, ADMIN)
    assert client.get("/dev/outbox").status_code == 404


def test_dev_outbox_with_the_flag_needs_an_admin_sign_in(network):
    from tests.console_helpers import ADMIN, KIM, LEE, give_password, sign_in

    app = create_app(services=_outbox_services(network, dev_outbox=True))
    anonymous = app.test_client().get("/dev/outbox")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/signin")
    assert "+821012345602" not in anonymous.get_data(as_text=True)
    for email, roles in ((LEE, None), (KIM, None)):
        give_password(network, email, roles=roles)
        client = app.test_client()
        sign_in(client, email)
        refused = client.get("/dev/outbox")
        assert refused.status_code == 403 and "+821012345602" not in refused.get_data(as_text=True)
    give_password(network, ADMIN, roles="admin;member")
    client = app.test_client()
    sign_in(client, ADMIN)
    page = client.get("/dev/outbox").get_data(as_text=True)
    assert "+821012345602" in page and "C1 Kim: &lt;b&gt;hi&lt;/b&gt;" in page


def test_dev_outbox_is_refused_on_an_https_base(network):
    from relay.infra.settings import SettingsError

    services = _outbox_services(network, dev_outbox=True)
    services.settings = services.settings.replace(public_base_url="https://relay.example.org")
    with pytest.raises(SettingsError, match="RELAY_DEV_OUTBOX"):
        create_app(services=services)


def test_dev_outbox_is_off_with_a_provider(client):
    assert client.get("/dev/outbox").status_code == 404


# ---------------------------------------------------------------- relay events list|retry (issue 13, item 9)


def test_events_list_shows_failing_and_set_aside_events_and_retry_runs_one_again(settings, network, monkeypatch):
    from click.testing import CliRunner
    from sqlalchemy import update

    from relay.cli import main
    from relay.inbound import sms as processing
    from relay.inbound.drain import drain
    from relay.inbound.sms import process_inbound
    from relay.infra.audit import recent
    from relay.infra.db import transaction
    from relay.model.tables import InboundEvent
    from relay.sweeper import MAX_ATTEMPTS, sweep
    from tests.helpers import event

    poison = record_sms(network, "+821012345602", "C1 this one breaks a template")
    failing = record_sms(network, "+821012345603", "C1 this one too")
    fine = record_sms(network, "+12025550105", "C1 this one is fine")
    real = processing._process
    monkeypatch.setattr(processing, "_process", lambda session, settings, event_id: real(session, settings, event_id)
                        if event_id == fine else (_ for _ in ()).throw(KeyError("template 'relay' has no 'ko'")))
    assert drain(network).failed == 2
    with transaction(network.sessions) as session:  # the poison one failed every time; the sweeper sets it aside
        session.execute(update(InboundEvent).where(InboundEvent.id == poison).values(attempts=MAX_ATTEMPTS))
    assert sweep(network).set_aside == 1

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    listed = runner.invoke(main, ["events", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2, listed.output  # the processed one is not listed
    assert lines[0].split()[:6] == [str(poison), "sms", "set", "aside", "attempts", str(MAX_ATTEMPTS)]
    assert lines[1].split()[:5] == [str(failing), "sms", "failing", "attempts", "1"]
    assert all("KeyError: \"template 'relay' has no 'ko'\"" in line and " old " in line for line in lines)

    monkeypatch.setattr(processing, "_process", real)  # the template is fixed
    retried = runner.invoke(main, ["events", "retry", str(poison)])
    assert retried.exit_code == 0, retried.output
    assert f"inbound event {poison} queued again" in retried.output
    reset = event(network, poison)
    assert (reset.attempts, reset.processed_at, reset.outcome) == (0, None, "received")
    with network.sessions() as session:
        audited = recent(session, 5, "inbound.retry")
    assert len(audited) == 1 and audited[0].subject == f"inbound:{poison}"
    assert audited[0].detail["attempts"] == MAX_ATTEMPTS and audited[0].detail["outcome"] == "failed"
    assert audited[0].actor.startswith("cli:")
    assert process_inbound(network, poison).outcome == "posted"  # what the queued task does
    assert process_inbound(network, poison).outcome == "duplicate"  # once only

    refused = runner.invoke(main, ["events", "retry", str(fine)])
    assert refused.exit_code == 1 and "was processed (posted)" in refused.output
    assert runner.invoke(main, ["events", "retry", "99999"]).exit_code == 1
    relisted = runner.invoke(main, ["events", "list"]).output.splitlines()
    assert [line.split()[0] for line in relisted] == [str(failing)]


@pytest.mark.parametrize("purpose,expected", [
    ("confirm_subscription", "/digest/confirm/"),  # the confirmation link
    ("unsubscribed", "unsubscribed"),
    ("preferences_changed", "/preferences/"),
])
def test_dev_outbox_shows_the_text_of_every_email(network, purpose, expected):
    """Issue 15, item 5: emails composed whole (confirmations, unsubscribed, preferences changed) have no
    separate body; the outbox's text column shows their text part, links included."""
    from relay.model.tables import Delivery, Member, utcnow
    from relay.providers.outbox import read_outbox
    from relay.render.digest_mail import outbound
    from tests.console_helpers import ADMIN, give_password, sign_in

    services = _outbox_services(network, dev_outbox=True)
    with network.sessions() as session:
        member = session.query(Member).filter_by(phone="+821012345602").one()
        delivery = Delivery(id=41, dedupe_key=f"{purpose}:3:x", purpose=purpose, member_id=member.id,
                            channel="email", to_address=member.email, body="", created_at=utcnow())
        services.sender("email").send(outbound(session, services.settings, delivery))
    [record] = [r for r in read_outbox(services.settings.outbox_dir) if r["channel"] == "email"]
    assert record["body"].strip() and expected in record["body"], record
    give_password(network, ADMIN, roles="admin;member")
    client = create_app(services=services).test_client()
    sign_in(client, ADMIN)
    assert expected in client.get("/dev/outbox").get_data(as_text=True)
