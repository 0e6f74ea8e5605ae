"""A drained batch of replies' statements on PostgreSQL cost what the batch costs, not what the backlog costs
(issue 18, item 4; docs/scale.md): run as relay runs them on a backlog just stored, then measured with
EXPLAIN ANALYZE and rolled back."""
from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from relay.inbound import batch as inbound_batch
from relay.infra.db import make_engine
from tests.helpers import explained, plan_nodes, rows_looked_at

BATCH = 200  # a drained batch's


def test_counting_a_batchs_attempts_reads_the_batch_not_the_whole_backlog(postgres_only_url):
    """count_attempts is `id = ANY(batch) AND processed_at IS NULL`. The second part matches
    ix_inbound_unprocessed, which holds the whole backlog during a burst: a planner that took the unprocessed
    events for few (statistics from before the burst) read all of them for every batch (15 ms a batch with
    59,000 stored in the bench's ingest, against ~1 ms)."""
    engine = make_engine(postgres_only_url)
    events = ("INSERT INTO inbound_events (provider, kind, dedupe_key, raw, content_type, sender, received_at,"
              " processed_at, attempts, outcome, rules_fired, detail, last_error, guard_verdict)"
              " SELECT 'twilio', 'sms', 'SM' || i, 'Body=x', '', '+1404' || lpad(i::text, 7, '0'), now(), {processed},"
              " 0, '', '[]', '', '', '' FROM generate_series(:start, :start + 19999) AS i")
    with engine.begin() as conn:  # a history of processed replies, as autovacuum has analyzed it
        conn.execute(text(events.format(processed="now()")), {"start": 1})
        conn.execute(text("ANALYZE inbound_events"))
    with engine.begin() as conn:  # then a burst: 20,000 replies stored, waiting
        conn.execute(text(events.format(processed="NULL")), {"start": 100_001})
        first = conn.execute(text("SELECT min(id) FROM inbound_events WHERE processed_at IS NULL")).scalar()
    ids = list(range(first + 5000, first + 5000 + BATCH))
    services = SimpleNamespace(sessions=sessionmaker(engine))

    plan = explained(engine, lambda _session: inbound_batch.count_attempts(services, ids), "UPDATE")
    scans = [node for node in plan_nodes(plan) if node.get("Relation Name") == "inbound_events"]
    assert scans and sum(rows_looked_at(node) for node in scans) <= 2 * BATCH, json.dumps(plan, indent=1)
    engine.dispose()
