"""Promise: while the database is down the receiver never answers 200 for a webhook it could not
keep: it answers 503 (Twilio retries), and workers holding tasks retry until the database returns.

A throwaway PostgreSQL cluster (initdb/pg_ctl on a free port) is stopped (`pg_ctl -m immediate`,
as a crash) with three webhooks accepted but not yet processed (the worker was stopped), so the
restarted worker meets the outage with tasks in hand. Webhooks posted during the outage must get
503; re-posted after it (as Twilio retries), they are kept and processed. The sweeper is not run:
the worker's own retries must bring the first three through."""
from __future__ import annotations

import collections
import time

from sqlalchemy import func, select

from relay.migrate import upgrade
from relay.models import InboundEvent, Post
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
        answers = collections.Counter()
        refused: list[dict[str, str]] = []
        slowest = 0.0
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < OUTAGE:
            form, response, took = cluster.sms(EVERYONE[n % 5], f"C1 during the outage {n}")
            answers[response.status_code] += 1
            slowest = max(slowest, took)
            assert response.status_code == 503, (response.status_code, response.text)
            assert response.headers.get("Retry-After")
            refused.append(form)
            n += 1
            time.sleep(0.3)
        wait_until(lambda: "database unavailable" in worker.log(), 30, "the worker to meet the outage",
                   watch=[worker])
        private_postgres.start()

        retried = collections.Counter()
        for form in refused:  # Twilio retries what got 503
            response = cluster.post_signed("/webhooks/twilio/sms", form)
            retried[response.status_code] += 1
        wait_until(lambda: cluster.unprocessed() == 0, 90, "every kept webhook to be processed", interval=0.5,
                   watch=[cluster.web, worker])
        with cluster.services.sessions() as session:
            kept = session.scalar(select(func.count()).select_from(InboundEvent))
            outcomes = collections.Counter(session.scalars(select(InboundEvent.outcome)))
            posts = collections.Counter(session.scalars(select(Post.body).where(Post.kind == "reply")))
    finally:
        cluster.close()

    worker_retries = worker.log().count("database unavailable")
    expected = [f"before the outage {n}" for n in range(3)] + [f"during the outage {n}" for n in range(len(refused))]
    lost = sum(1 for body in expected if posts[body] == 0)
    processed_twice = sum(c - 1 for c in posts.values() if c > 1)
    report("database_down", outage_seconds=OUTAGE, during_outage=len(refused), answered_during=dict(answers),
           slowest_answer=f"{slowest:.2f}s", retried_by_provider=dict(retried), worker_retries=worker_retries,
           kept=kept, lost=lost, processed_twice=processed_twice)
    assert len(refused) >= 5
    assert answers == {503: len(refused)}  # never a 200 for something not kept
    assert retried == {200: len(refused)}
    assert worker_retries >= 1
    assert kept == 3 + len(refused)
    assert outcomes == {"posted": kept}
    assert lost == 0 and processed_twice == 0
