"""issue 17: the console asks for acknowledgement when composing, and the notice page shows acknowledged /
waiting / escalated / unreachable as counts (live in /counts) and a per-member table, with a CSV export."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from relay.model.tables import Notice
from relay.notices.escalation import escalate
from tests.conftest import run_worker
from tests.console_helpers import KIM, LEE, csrf, give_password, reads_english, sign_in
from tests.helpers import member, record_sms
from webhooks.app import create_app

PARK_PHONE, LEE_PHONE = "+821012345603", "+821012345602"


@pytest.fixture
def console(network):
    give_password(network, KIM)
    give_password(network, LEE)
    client = create_app(services=network).test_client()
    sign_in(client, KIM)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    return client


def _compose_and_send(console, network) -> int:
    response = console.post("/console/notices", data={
        "csrf_token": csrf(console), "kind": "announcement", "title": "Isolation guideline changed",
        "lists": "tft", "channels": "sms", "severity": "urgent", "ack_within": "10m"})
    assert response.status_code == 302, response.get_data(as_text=True)
    notice_id = int(re.search(r"/console/notices/(\d+)", response.headers["Location"]).group(1))
    assert console.post(f"/console/notices/{notice_id}/send", data={"csrf_token": csrf(console)}).status_code == 302
    run_worker(network)
    return notice_id


def test_the_notice_page_counts_and_lists_acknowledgements(console, network):
    notice_id = _compose_and_send(console, network)
    record_sms(network, LEE_PHONE, f"ACK {notice_id}")
    run_worker(network)
    with network.sessions() as session:
        sent_at = session.get(Notice, notice_id).sent_at
    escalate(network, sent_at + timedelta(minutes=10, seconds=1))
    page = console.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert '<b id="ack-acknowledged">1</b>' in page and '<b id="ack-escalated">4</b>' in page
    assert '<b id="ack-waiting">0</b>' in page and 'id="ack-step-channels">4<' in page
    assert page.count('data-state="escalated"') == 4 and page.count('data-state="acknowledged"') == 1
    live = console.get(f"/console/notices/{notice_id}/counts").get_json()["acks"]
    assert (live["acknowledged"], live["escalated"], live["total"]) == (1, 4, 5)

    exported = console.get(f"/console/notices/{notice_id}/acknowledgements.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    lee = next(r for r in rows if r["member_id"] == str(member(network, LEE_PHONE).id))
    assert (lee["state"], lee["channel"]) == ("acknowledged", "sms") and lee["acknowledged_at"]
    park = next(r for r in rows if r["member_id"] == str(member(network, PARK_PHONE).id))
    assert park["state"] == "escalated" and park["escalated_channels_at"] and not park["called_at"]


def test_a_member_may_not_export_acknowledgements(network):
    give_password(network, LEE)
    client = create_app(services=network).test_client()
    sign_in(client, LEE)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    assert client.get("/console/notices/1/acknowledgements.csv").status_code == 403


def test_a_bad_window_is_explained(console):
    response = console.post("/console/notices", data={
        "csrf_token": csrf(console), "kind": "announcement", "title": "x", "lists": "tft", "ack_within": "soon"})
    assert response.status_code == 400 and "30m or 2h" in response.get_data(as_text=True)
