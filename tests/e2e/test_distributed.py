"""The distributed deployment end to end: gunicorn (2 workers) and a Celery worker as separate
processes, sharing PostgreSQL and Redis, sending to the Twilio stand-in over real HTTP. The main flow
runs on granian too (`relay web --server granian`, issue 18).

The relay is reached at http://127.0.0.1:PORT but configured with the public base
https://relay.example.org, as behind a TLS-terminating proxy: webhooks are signed over the public
URL, and a signature over the internal URL is refused."""
from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.members.directory import import_members
from relay.model.tables import ConsentEvent, Delivery, InboundEvent, Member, Post
from relay.notices.lifecycle import new_case_notice
from relay.providers.twilio_sms import EMPTY_TWIML, sign
from relay.services import Services, build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.helpers import in_written_order, sms_form
from tests.standins.twilio_api import Recorded, TwilioStandIn

from .processes import (
    Proc,
    Processes,
    free_port,
    relay_command,
    relay_env,
    stays,
    wait_for_health,
    wait_for_log,
    wait_until,
)

pytestmark = pytest.mark.e2e

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
EVERYONE = {KIM, LEE, PARK, ALICE, BEN}
E2E_REDIS_DB = 11
WAIT = 20.0  # seconds any one step may take before the test fails


def _redis_db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@dataclass
class Cluster:
    base_url: str  # where the processes really listen
    standin: TwilioStandIn
    services: Services  # the test's own view of the same database and broker
    web: Proc
    worker: Proc
    public_base: str = PUBLIC_BASE  # RELAY_PUBLIC_BASE_URL of the processes: what Twilio signs over

    # ------------------------------------------------------------ webhooks

    def post_signed(self, path: str, form: dict[str, str], signed_base: str | None = None) -> requests.Response:
        """POST a form as Twilio would, signed over `signed_base` (default: the public base) + path."""
        signed_base = signed_base or self.public_base
        signature = sign(AUTH_TOKEN, signed_base + path, form)
        return requests.post(self.base_url + path, data=form, timeout=10, headers={
            "X-Twilio-Signature": signature, "X-Forwarded-Proto": urlsplit(self.public_base).scheme,
            "X-Forwarded-Host": urlsplit(self.public_base).netloc, "User-Agent": "TwilioProxy/1.1"})

    def sms(self, sender: str, body: str, **extra) -> tuple[dict[str, str], requests.Response]:
        form = sms_form(sender, body, **extra)
        return form, self.post_signed("/webhooks/twilio/sms", form)

    def status(self, sid: str, status: str, to: str) -> requests.Response:
        form = {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID, "MessageStatus": status,
                "SmsStatus": status, "To": to, "From": OUR_NUMBER, "ApiVersion": "2010-04-01"}
        return self.post_signed("/webhooks/twilio/status", form)

    # ------------------------------------------------------------ what happened

    def sent(self) -> list[Recorded]:
        """Every request the stand-in received so far (accepted or not), in order."""
        with self.standin.lock:
            return list(self.standin.requests)

    def wait_for_sent(self, count: int, what: str) -> list[Recorded]:
        def enough():
            sent = self.sent()
            return sent if len(sent) >= count else None

        return wait_until(enough, WAIT, f"{count} requests at the Twilio stand-in ({what})",
                          watch=[self.web, self.worker])

    def scalar(self, query):
        with self.services.sessions() as session:
            return session.scalar(query)

    def rows(self, query) -> list:
        with self.services.sessions() as session:
            return list(session.scalars(in_written_order(query)))

    def counts(self) -> dict[str, int]:
        return {model.__tablename__: self.scalar(select(func.count()).select_from(model))
                for model in (InboundEvent, Post, Delivery, ConsentEvent)}

    def member(self, phone: str) -> Member:
        return self.scalar(select(Member).where(Member.phone == phone))

    def event(self, sid: str) -> InboundEvent:
        return self.scalar(select(InboundEvent).where(InboundEvent.kind == "sms", InboundEvent.dedupe_key == sid))

    def wait_processed(self, sid: str) -> InboundEvent:
        return wait_until(lambda: (e := self.event(sid)) is not None and e.processed_at is not None and e,
                          WAIT, f"inbound {sid} to be processed", watch=[self.web, self.worker])

    # ------------------------------------------------------------ seeding

    def seed_and_notify(self) -> None:
        """Five members on list tft, case C1, and its new-case notice queued on the shared broker."""
        with transaction(self.services.sessions) as session:
            report = import_members(session, DEMO_CSV)
            assert not report.errors, report.errors
            assert create_case(session, "Fever and ground-glass opacities", chief_complaint="fever").code == "C1"
        result = new_case_notice(self.services, "C1", ["tft"])
        assert result.recipients == 5


@pytest.fixture
def cluster(request, postgres_only_url, redis_url, twilio_standin, processes: Processes, tmp_path):
    """The web on gunicorn, or on the server a test asks for (parametrize "cluster" indirectly)."""
    server = getattr(request, "param", "gunicorn")
    broker_url = _redis_db_url(redis_url, E2E_REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    prefix = f"relay-e2e-{secrets.token_hex(4)}:"  # other runs on this Redis never see our queues
    port = free_port()
    var_dir = tmp_path / "var"
    env = relay_env(
        DATABASE_URL=postgres_only_url, BROKER_URL=broker_url, PUBLIC_BASE_URL=PUBLIC_BASE, PORT=str(port),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM=OUR_NUMBER,
        TWILIO_API_URL=twilio_standin.url, TWILIO_NUMBERS=OUR_NUMBER, VAR_DIR=str(var_dir),
        BROKER_PREFIX=prefix,
    )
    web = processes.start("web", relay_command("web", "--port", str(port), "--server", server, "--workers", "2"),
                          env)
    worker = processes.start("worker", relay_command("worker", "--concurrency", "2"), env)
    settings = make_settings(tmp_path / "test-var", postgres_only_url, broker_url=broker_url, broker_prefix=prefix,
                             twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url)
    services = build_services(settings)
    try:
        base_url = f"http://127.0.0.1:{port}"
        health = wait_for_health(base_url, web)
        assert health["checks"] == {"database": "ok", "broker": "ok"}
        wait_for_log(worker, " ready.")
        yield Cluster(base_url, twilio_standin, services, web, worker)
    finally:
        processes.stop_all()  # before the database is emptied and the broker flushed
        services.dispatcher.app.close()
        services.dispose()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()


def assert_empty_twiml(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml"), response.headers
    assert response.text == EMPTY_TWIML
    root = ET.fromstring(response.content)
    assert root.tag == "Response" and len(root) == 0 and not (root.text or "").strip()


def assert_sent_properly(request: Recorded, public_base: str = PUBLIC_BASE) -> None:
    """What every request to the Twilio API must look like (from processes whose public base is `public_base`)."""
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.content_type.startswith("application/x-www-form-urlencoded")
    assert request.form["From"] == OUR_NUMBER
    assert request.form["StatusCallback"] == f"{public_base}/webhooks/twilio/status"


@pytest.mark.parametrize("cluster", ["gunicorn", "granian"], indirect=True)
def test_signed_sms_is_relayed_once_to_every_other_participant(cluster: Cluster):
    cluster.seed_and_notify()
    notices = cluster.wait_for_sent(5, "the new-case notice")
    assert sorted(r.form["To"] for r in notices) == sorted(EVERYONE)
    for request in notices:
        assert_sent_properly(request)
        assert request.status == 201
        assert "C1" in request.form["Body"] and f"{PUBLIC_BASE}/library/cases/C1" in request.form["Body"]

    # Alice opts out by SMS: no reply to her, and she is left out of what follows.
    form, response = cluster.sms(ALICE, "STOP")
    assert_empty_twiml(response)
    assert cluster.wait_processed(form["MessageSid"]).outcome == "command:stop"
    assert cluster.member(ALICE).sms_opted_out_at is not None

    # A signature over the internal URL (not the public one Twilio is configured with) is refused.
    before = cluster.counts()
    forged = sms_form(LEE, "C1 signed for the wrong URL")
    refused = cluster.post_signed("/webhooks/twilio/sms", forged, signed_base=cluster.base_url)
    assert refused.status_code == 403
    assert cluster.counts() == before

    # Lee's reply, signed over https://relay.example.org while reaching the relay at 127.0.0.1.
    form, response = cluster.sms(LEE, "C1 Looks like organising pneumonia")
    assert_empty_twiml(response)
    assert cluster.wait_processed(form["MessageSid"]).outcome == "posted"
    sent = cluster.wait_for_sent(5 + 4, "three relays and the confirmation")[5:]
    for request in sent:
        assert_sent_properly(request)
        assert request.status == 201
    relays = {r.form["To"]: r.form["Body"] for r in sent if r.form["To"] != LEE}
    assert relays == {phone: "C1 Lee Minho: Looks like organising pneumonia" for phone in (KIM, PARK, BEN)}
    assert [r.form["Body"] for r in sent if r.form["To"] == LEE] == ["Posted to C1, relayed to 4."]  # the opted-out member still follows by email
    posts = cluster.rows(select(Post).where(Post.kind == "reply"))
    assert [(p.body, p.channel) for p in posts] == [("Looks like organising pneumonia", "sms")]

    # Twilio retries the very same webhook: acknowledged again, and nothing else happens.
    before, sent_before = cluster.counts(), len(cluster.sent())
    assert sent_before == 5 + 4  # nothing beyond the notices, the relays and the confirmation
    replay = cluster.post_signed("/webhooks/twilio/sms", form)
    assert_empty_twiml(replay)
    wait_for_log(cluster.web, f"twilio sms {form['MessageSid']}: duplicate of event")
    stays(lambda: len(cluster.sent()) == sent_before and cluster.counts() == before, 2.0,
          "nothing new after the replayed webhook")

    # Status callbacks for Kim's relay: sent, then delivered, then a late "sent" again.
    relayed = {d.to_address: d for d in cluster.rows(select(Delivery).where(Delivery.purpose == "relay",
                                                                              Delivery.channel == "sms"))}
    assert set(relayed) == {KIM, PARK, BEN}
    assert {d.status for d in relayed.values()} == {"accepted"}
    kim = relayed[KIM]

    def kim_status():
        return cluster.scalar(select(Delivery.status).where(Delivery.id == kim.id))

    assert_empty_twiml(cluster.status(kim.provider_message_id, "sent", KIM))
    wait_until(lambda: kim_status() == "sent", WAIT, "Kim's relay to be sent", watch=[cluster.worker])
    assert_empty_twiml(cluster.status(kim.provider_message_id, "delivered", KIM))
    wait_until(lambda: kim_status() == "delivered", WAIT, "Kim's relay to be delivered", watch=[cluster.worker])
    assert_empty_twiml(cluster.status(kim.provider_message_id, "sent", KIM))

    # Park's callbacks arrive out of order: delivered first, then sent, which must not win.
    park = relayed[PARK]
    assert_empty_twiml(cluster.status(park.provider_message_id, "delivered", PARK))
    wait_until(lambda: cluster.scalar(select(Delivery.status).where(Delivery.id == park.id)) == "delivered",
               WAIT, "Park's relay to be delivered", watch=[cluster.worker])
    assert_empty_twiml(cluster.status(park.provider_message_id, "sent", PARK))

    def status_events():
        events = cluster.rows(select(InboundEvent).where(InboundEvent.kind == "status").order_by(InboundEvent.id))
        return events if events and all(e.processed_at is not None for e in events) else None

    events = wait_until(status_events, WAIT, "every status callback to be applied", watch=[cluster.worker])
    assert [(e.dedupe_key, e.outcome) for e in events] == [
        (f"{kim.provider_message_id}:sent", "applied"),
        (f"{kim.provider_message_id}:delivered", "applied"),  # the second "sent" is a duplicate at the edge
        (f"{park.provider_message_id}:delivered", "applied"),
        (f"{park.provider_message_id}:sent", "ignored"),
    ]
    final = {d.to_address: d.status for d in cluster.rows(select(Delivery).where(Delivery.purpose == "relay",
                                                                                  Delivery.channel == "sms"))}
    assert final == {KIM: "delivered", PARK: "delivered", BEN: "accepted"}
    assert len(cluster.sent()) == sent_before  # status callbacks never cause a send

    # The access log (gunicorn's, or relay's own under granian) has each request, and no token from a path.
    assert '"POST /webhooks/twilio/status HTTP/1.1" 200' in cluster.web.log()
    requests.get(f"{cluster.base_url}/u/12-sms-abcdefgh2jklmnop", timeout=10)
    wait_for_log(cluster.web, '"GET /u/')
    assert "abcdefgh2jklmnop" not in cluster.web.log()


def test_twilio_21610_opts_the_member_out(cluster: Cluster):
    cluster.standin.fail_to(BEN, 400, 21610, "Attempt to send to unsubscribed recipient")
    cluster.seed_and_notify()
    notices = cluster.wait_for_sent(5, "the new-case notice")
    assert sorted(r.form["To"] for r in notices) == sorted(EVERYONE)
    assert {r.form["To"]: r.status for r in notices if r.status != 201} == {BEN: 400}

    def bens_notice():
        delivery = cluster.scalar(select(Delivery).where(Delivery.to_address == BEN, Delivery.purpose == "notice"))
        return delivery if delivery.status != "sending" and delivery.status != "queued" else None

    delivery = wait_until(bens_notice, WAIT, "Ben's notice to be settled", watch=[cluster.worker])
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("opted_out", "21610", 1)
    assert cluster.member(BEN).sms_opted_out_at is not None
    consent = cluster.rows(select(ConsentEvent).where(ConsentEvent.member_id == delivery.member_id))
    assert [(c.channel, c.action, c.source) for c in consent] == [("sms", "opt_out", "provider:21610")]

    # From now on Ben is left out: Lee's reply goes to the three others, and Ben gets no retry.
    form, response = cluster.sms(LEE, "C1 Agree, organising pneumonia")
    assert_empty_twiml(response)
    assert cluster.wait_processed(form["MessageSid"]).outcome == "posted"
    sent = cluster.wait_for_sent(5 + 4, "three relays and the confirmation")[5:]
    assert sorted(r.form["To"] for r in sent) == sorted([KIM, PARK, ALICE, LEE])
    assert [r.form["Body"] for r in sent if r.form["To"] == LEE] == ["Posted to C1, relayed to 4."]  # the opted-out member still follows by email
    stays(lambda: len(cluster.sent()) == 9, 1.0, "no further sends (no retry to Ben)")
    assert [r.status for r in cluster.sent() if r.form["To"] == BEN] == [400]
