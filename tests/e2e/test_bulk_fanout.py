"""A 10,000-member notice through two real, independent Celery worker processes (PostgreSQL, Redis,
the Twilio stand-in and an SMTP sink over real sockets): exactly one delivery per member x channel,
exactly one message per delivery at the stand-ins, and both workers took a share of the batches."""
from __future__ import annotations

import re
import secrets
import time
from collections import Counter

import pytest
import redis
from sqlalchemy import func, select

from bench.seed import seed_network
from relay.model.tables import Delivery
from relay.notices.lifecycle import new_case_notice
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.standins.smtp_sink import SmtpSink

from .processes import Processes, relay_command, relay_env, stays, wait_for_log, wait_until

pytestmark = pytest.mark.e2e

MEMBERS = 10_000
E2E_REDIS_DB = 11


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def test_ten_thousand_member_notice_is_sent_once_per_delivery_by_two_workers(
        postgres_only_url, redis_url, twilio_standin, smtp_sink, processes: Processes, tmp_path):
    broker_url = redis_url.rsplit("/", 1)[0] + f"/{E2E_REDIS_DB}"
    prefix = f"relay-bulk-{secrets.token_hex(4)}:"
    settings = make_settings(tmp_path / "test-var", postgres_only_url, broker_url=broker_url, broker_prefix=prefix,
                             twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url, smtp_url=smtp_sink.url)
    services = build_services(settings)
    env = relay_env(DATABASE_URL=postgres_only_url, BROKER_URL=broker_url, BROKER_PREFIX=prefix,
                    PUBLIC_BASE_URL=PUBLIC_BASE, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                    TWILIO_FROM=OUR_NUMBER, TWILIO_API_URL=twilio_standin.url, SMTP_URL=smtp_sink.url,
                    SMS_RATE="0", VAR_DIR=str(tmp_path / "var"), SECRET_KEY=settings.secret())
    try:
        expected = seed_network(services.sessions, MEMBERS)
        workers = [processes.start(f"worker{i}", relay_command("worker", "-Q", "bulk,outbound", "-c", "2",
                                                               "--loglevel", "INFO"), env) for i in (1, 2)]
        for worker in workers:
            wait_for_log(worker, " ready.")

        started = time.monotonic()
        result = new_case_notice(services, "C1", ["everyone"])
        assert (result.recipients, result.sms, result.emails) == (MEMBERS, expected["sms"], expected["email"])
        total = expected["sms"] + expected["email"]

        def arrived() -> int:
            return len(twilio_standin.accepted) + len(smtp_sink.received)

        wait_until(lambda: arrived() >= total, 240, f"{total} messages at the stand-ins", interval=0.5,
                   watch=workers)
        elapsed = time.monotonic() - started
        stays(lambda: arrived() == total, 2.0, "no message more than one per delivery")

        sms_to = Counter(r.form["To"] for r in twilio_standin.accepted)
        email_to = Counter(rcpt for r in smtp_sink.received for rcpt in r.rcpt_tos)
        assert len(sms_to) == expected["sms"] and set(sms_to.values()) == {1}
        assert len(email_to) == expected["email"] and set(email_to.values()) == {1}

        with services.sessions() as session:
            per_pair = session.execute(select(Delivery.member_id, Delivery.channel, func.count())
                                       .group_by(Delivery.member_id, Delivery.channel)).all()
            assert len(per_pair) == total and {n for _, _, n in per_pair} == {1}
            statuses = dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
            assert statuses == {"accepted": total}
            sids = set(session.scalars(select(Delivery.provider_message_id).where(Delivery.channel == "sms")))
        assert len(sids) == expected["sms"]

        # the work was split: each worker ran a share of the bulk tasks
        done = [len(re.findall(r"relay\.deliver_batch\[[^\]]+\] succeeded", w.log())) for w in workers]
        assert sum(done) >= total // settings.bulk_batch_size and min(done) > 0, done  # RELAY_BULK_BATCH_SIZE each
        print(f"{total} messages in {elapsed:.1f}s ({total / elapsed:.0f}/s); batches per worker {done}")
    finally:
        processes.stop_all()
        services.dispatcher.app.close()
        services.dispose()
        broker = redis.Redis.from_url(broker_url)
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()
