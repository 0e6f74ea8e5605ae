"""A small relay deployment for fault tests: `relay web` (granian) and a Celery worker as real processes over a
database and broker the test chooses (often private ones it will stop), sending to the Twilio stand-in."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.members.directory import import_members
from relay.model.tables import InboundEvent
from relay.providers.twilio_sms import sign
from relay.services import Services, build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.e2e.processes import Proc, Processes, free_port, relay_command, relay_env, wait_for_health
from tests.helpers import sms_form

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
EVERYONE = (KIM, LEE, PARK, ALICE, BEN)


@dataclass
class Deployment:
    base_url: str
    services: Services  # the test's own view of the same database and broker
    env: dict[str, str]
    processes: Processes
    web: Proc | None = None
    workers: list[Proc] = field(default_factory=list)

    def start_web(self, workers: int = 2) -> Proc:
        port = urlsplit(self.base_url).port
        self.web = self.processes.start("web", relay_command("web", "--port", str(port), "--workers", str(workers)),
                                        self.env)
        return self.web

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> Proc:
        proc = self.processes.start(name, relay_command("worker", "--concurrency", str(concurrency)), self.env)
        self.workers.append(proc)
        return proc

    def restart_dead_workers(self) -> int:
        """What a restart policy (docker-compose `restart: unless-stopped`, systemd `Restart=always`) does:
        start again any worker that exited. Returns how many were restarted."""
        restarted = 0
        for index, proc in enumerate(self.workers):
            if not proc.alive:
                name = f"{proc.name.split('+')[0]}+{index}-{time.monotonic():.0f}"
                self.workers[index] = self.processes.start(name, proc.argv, self.env)
                restarted += 1
        return restarted

    def post_signed(self, path: str, form: dict[str, str], timeout: float = 15) -> requests.Response:
        signature = sign(AUTH_TOKEN, PUBLIC_BASE + path, form)
        return requests.post(self.base_url + path, data=form, timeout=timeout, headers={
            "X-Twilio-Signature": signature, "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": urlsplit(PUBLIC_BASE).netloc})

    def sms(self, sender: str, body: str) -> tuple[dict[str, str], requests.Response, float]:
        """Post a signed inbound SMS; returns the form, the response and how long it took."""
        form = sms_form(sender, body)
        started = time.monotonic()
        response = self.post_signed("/webhooks/twilio/sms", form)
        return form, response, time.monotonic() - started

    def unprocessed(self) -> int:
        with self.services.sessions() as session:
            return session.scalar(select(func.count()).select_from(InboundEvent)
                                  .where(InboundEvent.processed_at.is_(None)))

    def kept(self) -> int:
        with self.services.sessions() as session:
            return session.scalar(select(func.count()).select_from(InboundEvent))

    def env_path(self, name: str) -> Path:
        return Path(self.env[name])

    def close(self) -> None:
        app = getattr(self.services.dispatcher, "app", None)
        if app is not None:
            app.close()
        self.services.dispose()


def deployment(processes: Processes, tmp_path: Path, database_url: str, broker_url: str, twilio_url: str,
               **extra_env: str) -> Deployment:
    port = free_port()
    env = relay_env(DATABASE_URL=database_url, BROKER_URL=broker_url, PUBLIC_BASE_URL=PUBLIC_BASE, PORT=str(port),
                    TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM=OUR_NUMBER,
                    TWILIO_API_URL=twilio_url, TWILIO_NUMBERS=OUR_NUMBER, VAR_DIR=str(tmp_path / "var"),
                    **extra_env)
    settings = make_settings(tmp_path / "test-var", database_url, broker_url=broker_url,
                             twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER, twilio_api_url=twilio_url)
    return Deployment(f"http://127.0.0.1:{port}", build_services(settings), env, processes)


def seed_network(services: Services) -> None:
    """The five demo members on list tft, case C1, every member following it."""
    from relay.discussion.threads import ensure_thread
    from relay.library.cases import create_case
    from relay.model.tables import Member
    from relay.outbound.fanout import follow

    with transaction(services.sessions) as session:
        report = import_members(session, DEMO_CSV)
        assert not report.errors, report.errors
        case = create_case(session, "Fever and ground-glass opacities", chief_complaint="fever")
        thread = ensure_thread(session, case)
        follow(session, thread.id, list(session.scalars(select(Member.id))), reason="notified")


def wait_healthy(deployment: Deployment) -> None:
    wait_for_health(deployment.base_url, deployment.web, timeout=60)
