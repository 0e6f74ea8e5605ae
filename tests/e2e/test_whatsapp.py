"""WhatsApp end to end (issue 19): gunicorn and a Celery worker on PostgreSQL and Redis, sending to the
Twilio stand-in over real HTTP, with RELAY_TWILIO_WHATSAPP_FROM and a templates file set.

A notice to a list with SMS, email and WhatsApp members: free-form to the WhatsApp member inside the
24-hour window, a Content API template with the case's variables to the one outside it; a WhatsApp reply
threaded into the case and relayed to the SMS and email followers; a `read` callback counted by
`relay notice status`; STOP on WhatsApp honoured."""
from __future__ import annotations

import json
import secrets
import subprocess

import pytest
import redis
from sqlalchemy import select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.members.directory import import_members
from relay.model.tables import Delivery, Notice, Post
from relay.notices.lifecycle import new_case_notice
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.whatsapp_fixtures import (
    KIM,
    LEE,
    PARK,
    PRIYA,
    PRIYA_WA,
    RECORDED_ACCOUNT,
    TEMPLATES,
    WA_CSV,
    WA_FROM,
    load_form,
    text_form,
)

from .processes import Processes, free_port, relay_command, relay_env, wait_for_health, wait_for_log, wait_until
from .test_distributed import E2E_REDIS_DB, WAIT, Cluster, _redis_db_url, assert_empty_twiml

pytestmark = pytest.mark.e2e


@pytest.fixture
def wa_cluster(postgres_only_url, redis_url, twilio_standin, processes: Processes, tmp_path):
    broker_url = _redis_db_url(redis_url, E2E_REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    prefix = f"relay-e2e-wa-{secrets.token_hex(4)}:"
    port = free_port()
    templates = tmp_path / "whatsapp_templates.json"
    templates.write_text(json.dumps(TEMPLATES))
    env = relay_env(
        DATABASE_URL=postgres_only_url, BROKER_URL=broker_url, PUBLIC_BASE_URL=PUBLIC_BASE, PORT=str(port),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM=OUR_NUMBER,
        TWILIO_API_URL=twilio_standin.url, TWILIO_NUMBERS=OUR_NUMBER, VAR_DIR=str(tmp_path / "var"),
        BROKER_PREFIX=prefix, TWILIO_WHATSAPP_FROM=WA_FROM, WHATSAPP_TEMPLATES=str(templates),
    )
    web = processes.start("web", relay_command("web", "--port", str(port), "--workers", "2"), env)
    worker = processes.start("worker", relay_command("worker", "--concurrency", "2"), env)
    settings = make_settings(tmp_path / "test-var", postgres_only_url, broker_url=broker_url, broker_prefix=prefix,
                             twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url, whatsapp_from=WA_FROM, whatsapp_templates=templates)
    services = build_services(settings)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, web)
        wait_for_log(worker, " ready.")
        cluster = Cluster(base_url, twilio_standin, services, web, worker)
        cluster.env = env  # type: ignore[attr-defined]
        yield cluster
    finally:
        processes.stop_all()
        services.dispatcher.app.close()
        services.dispose()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()


def whatsapp(cluster: Cluster, sender: str, body: str) -> dict[str, str]:
    form = text_form(sender, body, "SM" + secrets.token_hex(16))
    assert_empty_twiml(cluster.post_signed("/webhooks/twilio/sms", form))
    return form


def test_a_notice_and_a_reply_across_sms_email_and_whatsapp(wa_cluster: Cluster):
    cluster = wa_cluster
    with transaction(cluster.services.sessions) as session:
        assert not import_members(session, WA_CSV).errors
        create_case(session, "Fever and ground-glass opacities", chief_complaint="fever")

    # Priya writes on WhatsApp: her opt-in is recorded and her 24-hour window opens (asked which case).
    form = whatsapp(cluster, PRIYA_WA, "hello, is this the network?")
    assert cluster.wait_processed(form["MessageSid"]).outcome == "asked:none"
    [asked] = cluster.wait_for_sent(1, "the answer to Priya")
    assert (asked.form["To"], asked.form["From"]) == (f"whatsapp:{PRIYA_WA}", WA_FROM)

    # The notice: SMS to Kim and Park, free-form WhatsApp to Priya (inside her window), a template to Lee
    # (he never wrote), email to Kim and Alice.
    result = new_case_notice(cluster.services, "C1", ["tft"])
    sent = cluster.wait_for_sent(1 + 4, "the notice by SMS and WhatsApp")[1:]
    by_to = {r.form["To"]: r.form for r in sent}
    assert set(by_to) == {KIM, PARK, f"whatsapp:{PRIYA_WA}", f"whatsapp:{LEE}"}
    assert "C1" in by_to[f"whatsapp:{PRIYA_WA}"]["Body"] and "ContentSid" not in by_to[f"whatsapp:{PRIYA_WA}"]
    template = by_to[f"whatsapp:{LEE}"]
    assert "Body" not in template and template["ContentSid"] == TEMPLATES["new_case"]["en"]
    assert json.loads(template["ContentVariables"]) == {
        "1": "C1", "2": "Fever and ground-glass opacities", "3": f"{PUBLIC_BASE}/library/cases/C1"}
    assert template["From"] == WA_FROM and template["StatusCallback"] == f"{PUBLIC_BASE}/webhooks/twilio/status"
    emails = wait_until(lambda: (rows := cluster.rows(select(Delivery).where(
        Delivery.channel == "email", Delivery.status == "accepted"))) and len(rows) >= 2 and rows, WAIT, "two emails")
    assert sorted(d.to_address for d in emails) == ["alice@example.org", "jiwon@example.org"]

    # Twilio reports Lee's template read: counted as read, and a late `delivered` does not undo it.
    lee_sid = next(r for r in sent if r.form["To"] == f"whatsapp:{LEE}")
    sid = cluster.scalar(select(Delivery.provider_message_id).where(Delivery.to_address == f"whatsapp:{LEE}"))
    assert sid and lee_sid.status == 201
    for name in ("status_sent.txt", "status_read.txt", "status_delivered.txt"):
        assert_empty_twiml(cluster.post_signed("/webhooks/twilio/status", load_form(name, SMSID_PLACEHOLDER=sid, **{RECORDED_ACCOUNT: ACCOUNT_SID})))
    wait_until(lambda: cluster.scalar(select(Delivery.status).where(Delivery.provider_message_id == sid)) == "read",
               WAIT, "Lee's notice read", watch=[cluster.web, cluster.worker])
    status = subprocess.run(relay_command("notice", "status", str(result.notice_id)), env=cluster.env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "whatsapp: " in status.stdout and "read 1" in status.stdout, status.stdout

    # Lee answers on WhatsApp: threaded into C1, relayed by SMS (Kim, Park), email (Kim, Alice) and WhatsApp
    # (Priya, inside her window); his confirmation comes back on WhatsApp.
    form = whatsapp(cluster, LEE, "C1 Looks like organising pneumonia")
    event = cluster.wait_processed(form["MessageSid"])
    assert event.outcome == "posted"
    post = cluster.scalar(select(Post).where(Post.inbound_event_id == event.id))
    assert post.channel == "whatsapp"
    relays = cluster.wait_for_sent(5 + 4, "the reply relayed and confirmed")[5:]
    text = "C1 Lee Minho: Looks like organising pneumonia"
    assert sorted((r.form["To"], r.form.get("Body")) for r in relays) == sorted([
        (KIM, text), (PARK, text), (f"whatsapp:{PRIYA_WA}", text), (f"whatsapp:{LEE}", "Posted to C1, relayed to 4.")])
    wait_until(lambda: len(cluster.rows(select(Delivery).where(Delivery.post_id == post.id,
                                                                Delivery.channel == "email",
                                                                Delivery.status == "accepted"))) == 2,
               WAIT, "the reply by email to Kim and Alice", watch=[cluster.web, cluster.worker])

    # Priya sends STOP on WhatsApp: no answer, opted out of WhatsApp; Lee's next post skips her.
    form = whatsapp(cluster, PRIYA_WA, "STOP")
    assert cluster.wait_processed(form["MessageSid"]).outcome == "command:stop"
    assert cluster.member(PRIYA).whatsapp_opted_out_at is not None
    form = whatsapp(cluster, LEE, "C1 and a follow-up CT in 2 weeks")
    assert cluster.wait_processed(form["MessageSid"]).outcome == "posted"
    later = cluster.wait_for_sent(9 + 3, "the second reply")[9:]
    assert sorted(r.form["To"] for r in later) == sorted([KIM, PARK, f"whatsapp:{LEE}"])
    with cluster.services.sessions() as session:
        assert session.get(Notice, result.notice_id).status == "sent"
