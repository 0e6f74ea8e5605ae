"""Promise: a worker killed (kill -9) in the middle of a notice's fan-out loses nothing, leaves
nothing "sending" forever, and duplicates at most the sends that were in flight at the kill.

A real `relay worker` (Celery, 4 pool processes) sends a notice to 10,000 members through the
Twilio stand-in over HTTP, with a private Redis as broker. When about half is sent, the worker's
whole process group gets SIGKILL (no warm shutdown, no task acknowledged or rejected). A new worker
is started; the sweeper (relay/sweeper.py, run here by the test whenever the queue is empty)
re-dispatches what the dead worker held: expired leases (RELAY_SEND_LEASE=3s here) and queued
deliveries whose task vanished with the worker's prefetch."""
from __future__ import annotations

import collections
import os
import signal
import time
from datetime import timedelta

from sqlalchemy import func, select

from relay.model.tables import Delivery
from relay.notices.lifecycle import new_case_notice
from relay.services import build_services
from relay.sweeper import sweep
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.e2e.processes import relay_command, relay_env, wait_until

from .conftest import report
from .seeding import seed_members

# 10,000 in the issue; 1,000 by default because on a shared 2-core machine a notice goes out at only
# 20-40 sends/s through one per-delivery task each (10,000 took 5.5 minutes: see docs/RELIABILITY.md).
# RELAY_FAULT_MEMBERS=10000 runs the full size.
MEMBERS = int(os.environ.get("RELAY_FAULT_MEMBERS", "1000"))
KILL_AFTER = MEMBERS // 2
LEASE_SECONDS = 3


def _statuses(services) -> dict[str, int]:
    with services.sessions() as session:
        return dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())


def test_worker_killed_mid_fan_out_loses_nothing(postgres_only_url, private_redis, twilio_standin, processes,
                                                 tmp_path):
    env = relay_env(DATABASE_URL=postgres_only_url, BROKER_URL=private_redis.url, PUBLIC_BASE_URL=PUBLIC_BASE,
                    TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM=OUR_NUMBER,
                    TWILIO_API_URL=twilio_standin.url, TWILIO_NUMBERS=OUR_NUMBER, VAR_DIR=str(tmp_path / "var"),
                    SEND_LEASE=f"{LEASE_SECONDS}s", LOG_LEVEL="WARNING")
    settings = make_settings(tmp_path / "test-var", postgres_only_url, broker_url=private_redis.url,
                             twilio_account_sid=ACCOUNT_SID, twilio_from=OUR_NUMBER,
                             twilio_api_url=twilio_standin.url)
    services = build_services(settings)
    try:
        started = time.monotonic()
        phones = seed_members(services, MEMBERS)
        print(f"seeded in {time.monotonic() - started:.1f}s")
        first = processes.start("worker-1", relay_command("worker", "--concurrency", "4", "--loglevel", "WARNING"),
                                env)
        result = new_case_notice(services, "C1", ["all"])
        assert result.recipients == MEMBERS
        print(f"notice fanned out in {time.monotonic() - started:.1f}s")

        wait_until(lambda: len(twilio_standin.accepted) >= KILL_AFTER, 240, f"{KILL_AFTER} sends before the kill",
                   interval=0.02, watch=[first])
        os.killpg(first.pgid, signal.SIGKILL)  # the whole worker: main process and pool, no goodbye
        first.popen.wait(timeout=10)
        time.sleep(0.3)  # let the stand-in finish answering requests already on the wire
        print(f"killed at {time.monotonic() - started:.1f}s")
        at_kill = _statuses(services)
        in_flight = at_kill.get("sending", 0)
        sent_at_kill = len(twilio_standin.accepted)

        second = processes.start("worker-2", relay_command("worker", "--concurrency", "4", "--loglevel", "WARNING"),
                                 env)
        broker = private_redis.client()
        sweeps = collections.Counter()

        def settled():
            statuses = _statuses(services)
            if statuses.get("queued", 0) + statuses.get("sending", 0) == 0:
                return statuses
            if broker.llen("outbound") == 0:  # the queue ran dry: what is left was held by the dead worker
                swept = sweep(services, stale_after=timedelta(seconds=LEASE_SECONDS))
                sweeps["deliveries"] += swept.deliveries
            return None

        final = wait_until(settled, 240, "every delivery to be sent or failed", interval=0.5, watch=[second])
        broker.close()
    finally:
        services.dispatcher.app.close()
        services.dispose()

    per_phone = collections.Counter(r.form["To"] for r in twilio_standin.accepted)
    lost = sum(1 for phone in phones if per_phone[phone] == 0)
    duplicated = sum(n - 1 for n in per_phone.values() if n > 1)
    report("worker_killed", members=MEMBERS, sent_at_kill=sent_at_kill, in_flight_at_kill=in_flight,
           redispatched_by_sweeper=sweeps["deliveries"], lost=lost, duplicated=duplicated,
           final=dict(sorted(final.items())))
    assert 0 < sent_at_kill < MEMBERS, "the kill must land in the middle of the fan-out"
    assert set(final) <= {"accepted", "failed"}
    assert final.get("accepted", 0) + final.get("failed", 0) == MEMBERS
    assert final.get("failed", 0) == 0  # nothing here had a reason to fail
    assert lost == 0
    assert duplicated <= in_flight
    assert set(per_phone) == set(phones)
