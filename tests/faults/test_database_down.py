"""Promise: while the database is down no inbound text is lost and none is answered 200 without
being kept durably: Twilio retries only when it cannot connect, so the web keeps each verified
webhook in its local spool (relay/infra/spool.py) and answers 200; when the database returns, the web
replays the spool, and each webhook is processed exactly once. Workers holding tasks retry until
the database returns.

A throwaway PostgreSQL cluster (initdb/pg_ctl on a free port) is stopped (`pg_ctl -m immediate`,
as a crash) with three webhooks accepted but not yet processed (the worker was stopped), so the
restarted worker meets the outage with tasks in hand. Webhooks posted during the outage must get
200 and be in the spool; after the outage nothing is posted again until the web has replayed the
spool by itself and everything is processed; then every outage webhook is posted once more (as a
fallback URL or an operator might) and must change nothing. The sweeper is not run: the worker's
own retries must bring the first three through, and the web's replay the rest."""
from __future__ import annotations

import collections
import time

import requests
from sqlalchemy import func, select

from relay.infra.migrate import upgrade
from relay.model.tables import InboundEvent, Post
from tests.e2e.processes import wait_until

from .cluster import EVERYONE, deployment, seed_network, wait_healthy
from .conftest import report

OUTAGE = 6.0


def test_database_outage_answers_503_and_workers_resume(private_postgres, private_redis, twilio_standin, processes,
                                                        tmp_path):
    upgrade(private_postgres.url)
    cluster = deployment(processes, tmp_path, private_postgres.url, private_redis.url, twilio_standin.url)
    try:
        seed_network(cluster.services)
        cluster.start_web()
        wait_healthy(cluster)

        # Accepted while no worker runs: three tasks wait in the queue.
        before = [cluster.sms(EVERYONE[n], f"C1 before the outage {n}") for n in range(3)]
        assert [response.status_code for _f, response, _t in before] == [200, 200, 200]

        private_postgres.stop("immediate")
        worker = cluster.start_worker()
        spool = cluster.env_path("RELAY_VAR_DIR") / "spool"
        answers = collections.Counter()
        spooled: list[dict[str, str]] = []
        slowest = 0.0
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < OUTAGE:
            form, response, took = cluster.sms(EVERYONE[n % 5], f"C1 during the outage {n}")
            answers[response.status_code] += 1
            slowest = max(slowest, took)
            assert response.status_code == 200, (response.status_code, response.text)
            spooled.append(form)
            n += 1
            time.sleep(0.3)
        in_spool = len(list(spool.glob("*.json")))
        health = requests.get(cluster.base_url + "/healthz", timeout=5)
        wait_until(lambda: "database unavailable" in worker.log(), 30, "the worker to meet the outage",
                   watch=[worker])
        private_postgres.start()

        # Nothing is posted now: the web replays its spool by itself once the database answers.
        wait_until(lambda: not list(spool.glob("*.json")), 60, "the web to replay its spool", interval=0.5,
                   watch=[cluster.web])
        wait_until(lambda: cluster.unprocessed() == 0 and cluster.kept() == 3 + len(spooled), 90,
                   "every kept webhook to be processed", interval=0.5, watch=[cluster.web, worker])
        resent = collections.Counter()
        for form in spooled:  # the same webhooks again (a fallback URL, an operator's replay): nothing new
            resent[cluster.post_signed("/webhooks/twilio/sms", form).status_code] += 1
        with cluster.services.sessions() as session:
            kept = session.scalar(select(func.count()).select_from(InboundEvent))
            outcomes = collections.Counter(session.scalars(select(InboundEvent.outcome)))
            posts = collections.Counter(session.scalars(select(Post.body).where(Post.kind == "reply")))
        set_aside = list((spool / "set-aside").glob("*")) if (spool / "set-aside").exists() else []
    finally:
        cluster.close()

    worker_retries = worker.log().count("database unavailable")
    logged_as_spooled = cluster.web.log().count("kept in the spool")
    expected = [f"before the outage {n}" for n in range(3)] + [f"during the outage {n}" for n in range(len(spooled))]
    lost = sum(1 for body in expected if posts[body] == 0)
    processed_twice = sum(c - 1 for c in posts.values() if c > 1)
    report("database_down", outage_seconds=OUTAGE, during_outage=len(spooled), answered_during=dict(answers),
           slowest_answer=f"{slowest:.2f}s", spooled=in_spool, healthz_during=health.status_code,
           resent_after=dict(resent), worker_retries=worker_retries, kept=kept, set_aside=len(set_aside), lost=lost,
           processed_twice=processed_twice)
    assert len(spooled) >= 5
    assert answers == {200: len(spooled)}  # never a 503 that Twilio would not retry
    assert in_spool == logged_as_spooled == len(spooled)  # each 200 was a file in the spool
    assert health.status_code == 503 and health.json()["checks"]["spool"]["files"] == len(spooled)
    assert resent == {200: len(spooled)}
    assert worker_retries >= 1
    assert kept == 3 + len(spooled) and set_aside == []
    assert outcomes == {"posted": kept}
    assert lost == 0 and processed_twice == 0
