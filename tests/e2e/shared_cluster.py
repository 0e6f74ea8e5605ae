"""One relay cluster (gunicorn web, Celery worker, Twilio stand-in, SMTP sink) shared by the browser and the
email e2e tests (issue 14: they used to start the same processes for every test).

It is started once per pytest process (each xdist worker; tests/conftest.py schedules the files that use
it onto one worker) and reset before each test: it waits until the worker is idle (no queued and no unacked
task, so nothing of the last test can act on the next one's rows), empties the tables and the stand-in's
records, restarts the SMTP sink (dropping the worker's kept connections, so each test counts its own
sessions), and deletes relay's own Redis keys (rate limits, doorbell) but keeps the broker's bindings. Its
public base is where it really listens (http://127.0.0.1:PORT), so the links in its messages open in the
browser and its Twilio signatures are computed over that base.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import pytest
import redis
import requests
from sqlalchemy import func, select

from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, _empty_tables, fresh_postgres_database, make_settings
from tests.standins.smtp_sink import Received, SmtpSink
from tests.standins.twilio_api import TwilioStandIn

from .processes import Processes, free_port, relay_command, relay_env, wait_for_health, wait_for_log, wait_until
from .test_distributed import E2E_REDIS_DB, WAIT, Cluster, _redis_db_url

MAIL_FROM, DOMAIN = "cases@relay.example.org", "relay.example.org"
WORKER_CONCURRENCY = 2  # pool processes, each keeping a few SMTP connections open (SMTP_POOL_SIZE)
IDLE_TIMEOUT = 30.0  # seconds the worker may take to finish what the last test left queued


@dataclass
class SharedCluster(Cluster):
    """test_distributed's Cluster, plus the SMTP sink, the Mailgun signing key and the broker to reset."""
    sink: SmtpSink = field(default=None)  # type: ignore[assignment]
    mailgun_key: str = ""
    broker: redis.Redis = field(default=None)  # type: ignore[assignment]
    prefix: str = ""
    database_url: str = ""

    def mails(self) -> list[Received]:
        """Every message the SMTP sink accepted since this test began, in order."""
        with self.sink.lock:
            return list(self.sink.received)

    def wait_for_mails(self, count: int, what: str) -> list[Received]:
        def enough():
            mails = self.mails()
            return mails if len(mails) >= count else None

        return wait_until(enough, WAIT, f"{count} messages at the SMTP sink ({what})",
                          watch=[self.web, self.worker])

    def post_mailgun(self, form: dict[str, str]) -> requests.Response:
        """POST an inbound email as Mailgun's route would (its signature does not cover the URL)."""
        return requests.post(f"{self.base_url}/webhooks/email/mailgun", data=form, timeout=10,
                             headers={"User-Agent": "mailgun/treq-16.12.0"})

    def count(self, model, *where) -> int:
        return self.scalar(select(func.count()).select_from(model).where(*where))

    # ------------------------------------------------------------ between tests

    def _busy(self) -> list[str]:
        """The broker keys that still hold work: queued tasks (lists) and unacked ones (kombu's hash)."""
        busy = []
        for key in self.broker.scan_iter(match=f"{self.prefix}*"):
            name = key.decode()
            kind = self.broker.type(key).decode()
            if "_kombu.binding" in name:
                continue
            if (kind == "list" and self.broker.llen(key)) or (name.endswith("unacked") and self.broker.hlen(key)):
                busy.append(name)
        return busy

    def reset(self) -> None:
        """Bring the cluster back to "just started": idle worker, empty tables, empty records."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        quiet_since = None
        while True:  # idle for half a second running: a task may enqueue another as it finishes
            if self._busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 0.5:
                break
            assert time.monotonic() < deadline, f"the shared cluster's worker is still busy: {self._busy()}"
            assert self.web.alive and self.worker.alive, "the shared cluster's processes exited"
            time.sleep(0.05)
        _empty_tables(self.database_url)
        for key in self.broker.scan_iter(match=f"{self.prefix}*"):
            name = key.decode()
            if "_kombu" not in name and not name.endswith("unacked") and not name.endswith("unacked_index"):
                self.broker.delete(key)  # relay's rate limits, doorbell, caches
        with self.standin.lock:
            self.standin.requests.clear()
            self.standin.faults_by_to.clear()
            self.standin.next_faults.clear()
            self.standin.media.clear()
            self.standin.media_requests.clear()
        self.sink.restart()


@pytest.fixture(scope="session")
def shared_cluster(redis_url, tmp_path_factory):
    """The cluster, started at its first use in this pytest process; tests use it through a fixture that
    calls reset() first (see `cluster` in test_browser.py and test_email_thread.py).

    It has a database of its own: it lives until this pytest process ends, and its processes may still
    write after a test, while the other tests of this xdist worker use `postgres_url`."""
    with fresh_postgres_database("_cluster") as database_url:
        yield from _shared_cluster(database_url, redis_url, tmp_path_factory)


def _shared_cluster(database_url, redis_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared-cluster")
    processes = Processes(tmp / "logs")
    standin, sink = TwilioStandIn().start(), SmtpSink().start()
    broker_url = _redis_db_url(redis_url, E2E_REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    prefix = f"relay-e2e-{secrets.token_hex(4)}:"  # other runs on this Redis never see our queues
    secret_key, mailgun_key = secrets.token_hex(16), secrets.token_hex(16)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = relay_env(
        DATABASE_URL=database_url, BROKER_URL=broker_url, PUBLIC_BASE_URL=base_url, PORT=str(port),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM=OUR_NUMBER,
        TWILIO_API_URL=standin.url, TWILIO_NUMBERS=OUR_NUMBER, VAR_DIR=str(tmp / "var"),
        BROKER_PREFIX=prefix, SMTP_URL=sink.url, MAIL_FROM=MAIL_FROM, MAIL_DOMAIN=DOMAIN,
        SECRET_KEY=secret_key, MAILGUN_SIGNING_KEY=mailgun_key,
    )
    web = processes.start("web", relay_command("web", "--port", str(port), "--workers", "2"), env)
    worker = processes.start("worker", relay_command("worker", "--concurrency", str(WORKER_CONCURRENCY)), env)
    # The tests' own view: the same database and broker (it only plans and queues; it never sends).
    settings = make_settings(tmp / "test-var", database_url, broker_url=broker_url, broker_prefix=prefix,
                             public_base_url=base_url, twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER,
                             twilio_api_url=standin.url, smtp_url=sink.url, mail_from=MAIL_FROM,
                             mail_domain=DOMAIN, secret_key=secret_key, mailgun_signing_key=mailgun_key)
    services = build_services(settings)
    try:
        health = wait_for_health(base_url, web)
        assert health["checks"] == {"database": "ok", "broker": "ok"}
        wait_for_log(worker, " ready.")
        yield SharedCluster(base_url, standin, services, web, worker, public_base=base_url, sink=sink,
                            mailgun_key=mailgun_key, broker=broker, prefix=prefix, database_url=database_url)
    finally:
        processes.stop_all()  # before the database is emptied, the broker flushed and the sink stopped
        services.dispatcher.app.close()
        services.dispose()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()
        standin.stop()
        sink.stop()


def logs_on_failure(request, cluster: SharedCluster):
    """The tail of the shared processes' logs, for a failed test's report."""
    failed = any(getattr(request.node, f"rep_{when}", None) is not None
                 and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    if failed:
        print(f"----- web {cluster.web.log_path}\n{cluster.web.log_tail(60)}\n"
              f"----- worker {cluster.worker.log_path}\n{cluster.worker.log_tail(60)}")
