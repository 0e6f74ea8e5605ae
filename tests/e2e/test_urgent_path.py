"""issue 17, end to end on real processes: gunicorn, two Celery workers and beat (restarted in the middle) on
PostgreSQL and Redis, sending SMS and calls to the Twilio stand-in over real HTTP, emails to the outbox.

A coordinator's `URGENT tft ACK 10m: ...` by SMS -> preview text with a code -> `SEND <code>` -> notices out;
two members acknowledge by SMS and one by the email link; the clock is shortened (the notice's send time is
moved ten minutes back and its escalation step set to a few seconds), so beat's sweeps escalate the rest:
the call (the other channel step is taken for them too), one presses 1 in the stand-in's Gather callback, and
the coordinator gets the list of the rest. Each member is called at most once. A stranger's NOTICE creates
nothing, and a code from another phone is refused."""
from __future__ import annotations

import re
import secrets
import time
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.members.directory import import_members
from relay.model.tables import Member, Notice
from relay.model.urgent import Acknowledgement, EscalationStep
from relay.providers.twilio_sms import sign
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.helpers import sms_form
from tests.standins.twilio_voice import play_gather

from .processes import Processes, free_port, relay_command, relay_env, wait_for_health, wait_for_log, wait_until

pytestmark = pytest.mark.e2e

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
STRANGER = "+821099990000"
E2E_REDIS_DB = 12
WAIT = 30.0
SWEEP_EVERY = 3  # seconds (RELAY_SWEEP_EVERY; 30 s in production)
SWEEP_WAIT = 40.0  # a restarted beat's first sweep comes one period after it starts; each step one period apart


def _redis_db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def test_urgent_notice_from_a_phone_acknowledged_and_escalated(postgres_only_url, redis_url, twilio_standin,
                                                               processes: Processes, tmp_path):
    broker_url = _redis_db_url(redis_url, E2E_REDIS_DB)
    prefix = f"relay-e2e-urgent-{secrets.token_hex(4)}:"
    port, var_dir = free_port(), tmp_path / "var"
    env = relay_env(DATABASE_URL=postgres_only_url, BROKER_URL=broker_url, PUBLIC_BASE_URL=PUBLIC_BASE,
                    PORT=str(port), TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                    TWILIO_FROM=OUR_NUMBER, TWILIO_API_URL=twilio_standin.url, TWILIO_NUMBERS=OUR_NUMBER,
                    VAR_DIR=str(var_dir), BROKER_PREFIX=prefix, SWEEP_EVERY=f"{SWEEP_EVERY}s")
    base = f"http://127.0.0.1:{port}"
    services = build_services(make_settings(tmp_path / "test-var", postgres_only_url, broker_url=broker_url,
                                            broker_prefix=prefix))
    broker = redis.Redis.from_url(broker_url)
    try:
        web = processes.start("web", relay_command("web", "--port", str(port), "--workers", "2"), env)
        workers = [processes.start(f"worker{i}", relay_command("worker", "--concurrency", "1"), env) for i in (1, 2)]
        beat = processes.start("beat", relay_command("beat"), env)
        watch = [web, *workers]
        wait_for_health(base, web)
        for worker in workers:
            wait_for_log(worker, " ready.")
        with transaction(services.sessions) as session:
            assert not import_members(session, DEMO_CSV).errors  # Kim is the coordinator

        def sms(sender: str, body: str) -> None:
            form = sms_form(sender, body)
            response = requests.post(base + "/webhooks/twilio/sms", data=form, timeout=10, headers={
                "X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_BASE + "/webhooks/twilio/sms", form)})
            assert response.status_code == 200, response.text

        def texts_to(phone: str) -> list[str]:
            with twilio_standin.lock:
                return [r.form["Body"] for r in twilio_standin.requests
                        if r.path.endswith("/Messages.json") and r.form.get("To") == phone and r.status == 201]

        def scalar(query):
            with services.sessions() as session:
                return session.scalar(query)

        def member_id(phone: str) -> int:
            return scalar(select(Member.id).where(Member.phone == phone))

        # A stranger and a plain member send NOTICE: refused, nothing created (the member, whose text threads
        # into no case, is told only coordinators send notices and how to post to a case).
        sms(STRANGER, "NOTICE tft: everyone out")
        sms(LEE, "NOTICE tft: everyone out")
        wait_until(lambda: texts_to(LEE), WAIT, "Lee's 'only coordinators'", watch=watch)
        assert "only coordinators" in texts_to(LEE)[0] and scalar(select(func.count()).select_from(Notice)) == 0

        # The coordinator's command, its preview with a code, a code from another phone, then SEND.
        sms(KIM, "URGENT tft ACK 10m: Isolation guideline changed: N95 in every room")
        preview = wait_until(lambda: [t for t in texts_to(KIM) if "SEND" in t], WAIT, "the preview", watch=watch)[0]
        code = re.search(r"SEND ([A-Z2-9]{6})", preview).group(1)
        # Kim reads Korean (issue 21): the preview in her language
        assert "SMS 5건" in preview and "이메일 5건" in preview and "10m 안에 확인 요청" in preview
        sms(PARK, f"SEND {code}")  # Park is not a coordinator: to her, SEND <code> can only be her own held reply
        wait_until(lambda: texts_to(PARK), WAIT, "Park's answer", watch=watch)
        assert code in texts_to(PARK)[0] and "held reply" in texts_to(PARK)[0]  # issue 16's answer: no such hold
        assert scalar(select(func.count()).select_from(Notice).where(Notice.status != "draft")) == 0  # nothing sent
        sms(KIM, f"SEND {code}")
        notice_id = wait_until(lambda: scalar(select(Notice.id).where(Notice.status == "sent")), WAIT,
                               "the notice to be sent", watch=watch)
        wait_until(lambda: all(any("Isolation guideline" in t and f"ACK {notice_id} " in t for t in texts_to(p))
                               for p in (KIM, LEE, PARK, ALICE, BEN)), WAIT, "the notices", watch=watch)
        assert texts_to(LEE)[-1].endswith(f"Reply ACK {notice_id} to confirm.")

        # Two acknowledge by SMS, Alice by her email's link (GET shows a button; the POST records).
        sms(LEE, f"ACK {notice_id}")
        sms(PARK, "1")
        eml = wait_until(lambda: [p for p in (var_dir / "outbox").glob("email-*.eml")
                                  if b"alice@example.org" in p.read_bytes()], WAIT, "Alice's email", watch=watch)[0]
        text = message_from_bytes(eml.read_bytes(), policy=default).get_body(("plain",)).get_content()
        link = re.search(r"https://relay\.example\.org(/ack/[a-z0-9-]+)", text).group(1)
        assert requests.get(base + link, timeout=10).status_code == 200
        assert requests.post(base + link, timeout=10).status_code == 200
        wait_until(lambda: scalar(select(func.count()).select_from(Acknowledgement)) == 3, WAIT, "three acks",
                   watch=watch)
        # the answer goes out after the acknowledgement is committed
        wait_until(lambda: any("is acknowledged" in t for t in texts_to(LEE)), WAIT, "Lee's confirmation", watch=watch)

        # The shortened clock: the window has passed, and each later step comes 12 s after the one before.
        # (At 6 s the restarted beat's first sweep could come so late on a loaded machine that the calls and
        # the report fell due in the same sweep, before Ben could answer his call: the report then named him.)
        with transaction(services.sessions) as session:
            notice = session.get(Notice, notice_id)
            notice.sent_at -= timedelta(minutes=10, seconds=1)
            notice.escalation_step_s = 4 * SWEEP_EVERY
        wait_until(lambda: scalar(select(func.count()).select_from(EscalationStep)
                                  .where(EscalationStep.step == "channels")) == 2, SWEEP_WAIT,
                   "the first escalation step (Kim and Ben)", watch=watch)
        beat.stop()  # beat restarts in the middle of the ladder
        beat = processes.start("beat2", relay_command("beat"), env)

        calls = wait_until(lambda: len(twilio_standin.calls) >= 2 and list(twilio_standin.calls), SWEEP_WAIT,
                           "the calls to Kim and Ben", watch=watch)
        assert sorted(c.to for c in calls) == sorted([KIM, BEN])
        status, answer = play_gather(next(c for c in calls if c.to == BEN), "1", AUTH_TOKEN, post_to=base)
        assert status == 200 and "Thank you" in answer
        assert scalar(select(Acknowledgement.channel).where(Acknowledgement.member_id == member_id(BEN))) == "voice"

        report = wait_until(lambda: [t for t in texts_to(KIM) if "응답 없는 회원" in t], SWEEP_WAIT,
                            "the report to the coordinator", watch=watch)
        assert len(report) == 1 and "전화 후에도 응답 없는 회원 1명: Kim Jiwon" in report[0]  # Kim reads Korean
        time.sleep(3 * SWEEP_EVERY + 2)  # more sweeps (two workers, a restarted beat): nothing is done twice
        assert sorted(c.to for c in twilio_standin.calls) == sorted([KIM, BEN])
        assert len([t for t in texts_to(KIM) if "응답 없는 회원" in t]) == 1
        steps = scalar(select(func.count()).select_from(EscalationStep))
        assert steps == 2 + 2 + 1  # channels x2, call x2, report x1
    finally:
        processes.stop_all()
        services.dispose()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()
