"""Health, metrics, the case page and the dev outbox."""
from __future__ import annotations

import pytest

from relay.dispatch import RecordingDispatcher
from relay.notices import new_case_notice
from relay.providers.outbox import OutboxSender
from relay.services import build_services
from webhooks.app import create_app

from .conftest import make_settings, run_worker
from .helpers import record_sms


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


def test_dev_outbox_page(tmp_path, database_url):
    settings = make_settings(tmp_path / "var", database_url)
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={"sms": OutboxSender(settings)})
    from relay.messages import OutboundMessage

    services.sender("sms").send(OutboundMessage(7, "sms", "+821012345602", "C1 Kim: <b>hi</b>"))
    page = create_app(services=services).test_client().get("/dev/outbox").get_data(as_text=True)
    assert "+821012345602" in page and "C1 Kim: &lt;b&gt;hi&lt;/b&gt;" in page


def test_dev_outbox_is_off_with_a_provider(client):
    assert client.get("/dev/outbox").status_code == 404
