"""issue 17, fault: a worker killed with SIGKILL in the middle of an escalation step neither skips nor doubles
it. The step runs in a real child process on PostgreSQL and is killed (1) inside the step's transaction, after
its rows and calls are planned but before the commit, and (2) after the commit, before its calls were
queued. Then the next sweep (relay.sweeper.sweep, as beat runs it) finishes the work: every silent member
is called exactly once through the Twilio stand-in, and has exactly one row per step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.model.tables import Delivery, Member, Notice
from relay.model.urgent import EscalationStep
from relay.notices.lifecycle import create_notice, send_notice
from relay.providers.twilio_voice import TwilioVoiceSender
from relay.sweeper import sweep
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, make_settings, run_worker
from tests.e2e.processes import REPO_ROOT

from .conftest import report

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"

# The child: a worker taking the escalation step, which stops at `where` (and waits to be killed there).
CHILD = r"""
import json, os, sys, time
from datetime import datetime
from pathlib import Path
from relay.infra.dispatch import RecordingDispatcher
from relay.infra.settings import Settings
from relay.notices import escalation
from relay.services import build_services

config = json.loads(sys.argv[1])
services = build_services(Settings(database_url=config["database_url"], var_dir=Path(config["var_dir"]),
                                   public_base_url="https://relay.example.org").with_defaults(),
                          dispatcher=RecordingDispatcher(), senders={})
marker = config["marker"]

def stop_here(*args, **kwargs):
    open(marker, "w").write("here")
    time.sleep(600)  # killed here

if config["where"] == "before_commit":
    planned = escalation.fanout.plan
    def plan_then_stop(session, rows):
        ids = planned(session, rows)
        session.flush()
        stop_here()
        return ids
    escalation.fanout.plan = plan_then_stop
else:
    escalation.dispatch_deliveries = stop_here
escalation.escalate(services, datetime.fromisoformat(config["now"]))
"""


@pytest.fixture
def urgent(postgres_only_url, tmp_path, twilio_standin):
    """The demo network with an urgent SMS-only notice from Kim, ACK within 10 min, sent; the voice sender
    goes to the Twilio stand-in over real HTTP."""
    from relay.infra.dispatch import RecordingDispatcher
    from relay.members.directory import import_members
    from relay.services import build_services
    from tests.conftest import DEMO_CSV, RecordingSender

    settings = make_settings(tmp_path / "var", postgres_only_url)
    voice = TwilioVoiceSender(settings.replace(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                                               twilio_from=OUR_NUMBER, twilio_api_url=twilio_standin.url), timeout=5)
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": RecordingSender(), "email": RecordingSender(), "voice": voice})
    with transaction(services.sessions) as session:
        assert not import_members(session, DEMO_CSV).errors
        kim = session.scalar(select(Member).where(Member.phone == KIM))
        notice = create_notice(session, kind="announcement", title="Isolation guideline changed", lists=["tft"],
                               severity="urgent", channels="sms", created_by=kim.id,
                               ack_within=timedelta(minutes=10), escalation_step=timedelta(minutes=5))
        notice_id = notice.id
    send_notice(services, notice_id)
    run_worker(services)
    # the shortened clock: the window and one step have passed, so channels and call are both due now
    with transaction(services.sessions) as session:
        session.get(Notice, notice_id).sent_at -= timedelta(minutes=15, seconds=5)
    services.notice_id = notice_id
    yield services
    services.dispose()


def _kill_mid_step(services, tmp_path, where: str) -> None:
    marker = tmp_path / f"marker-{where}"
    config = {"database_url": services.settings.database_url, "var_dir": str(tmp_path / "child-var"),
              "marker": str(marker), "where": where, "now": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config)], cwd=REPO_ROOT,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, f"the child exited early ({child.returncode})"
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()


def _counts(services) -> tuple[int, int, int]:
    with services.sessions() as session:
        steps = session.scalar(select(func.count()).select_from(EscalationStep))
        calls = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.purpose == "call"))
        grouped = (select(func.count().label("n")).select_from(EscalationStep)
                   .group_by(EscalationStep.member_id, EscalationStep.step).subquery())
        per_member = session.scalar(select(func.max(grouped.c.n)))
    return steps, calls, per_member or 0


@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
def test_a_worker_killed_mid_step_neither_skips_nor_doubles_it(urgent, tmp_path, twilio_standin, where):
    _kill_mid_step(urgent, tmp_path, where)
    after_kill = _counts(urgent)
    if where == "before_commit":
        assert after_kill == (0, 0, 0)  # rolled back whole: nothing half-done
    else:
        assert after_kill[:2] == (10, 5) and twilio_standin.calls == []  # committed, never queued
        with transaction(urgent.sessions) as session:  # a minute later, for the sweeper's staleness rule
            for delivery in session.scalars(select(Delivery).where(Delivery.dispatched_at.is_(None))):
                delivery.created_at -= timedelta(minutes=2)
    for _ in range(2):  # the next sweeps, as beat would run them (twice: the second must do nothing)
        sweep(urgent)
        run_worker(urgent)
    steps, calls, per_member = _counts(urgent)
    called = sorted(c.to for c in twilio_standin.calls)
    report(f"escalation_killed[{where}]", steps=steps, call_rows=calls, placed=len(called), max_per_step=per_member)
    assert (steps, calls, per_member) == (10, 5, 1)  # channels + call for each of the five, once
    assert called == sorted([KIM, LEE, PARK, ALICE, BEN])  # each called exactly once
