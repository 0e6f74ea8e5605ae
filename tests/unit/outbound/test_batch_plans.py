"""A bulk batch's statements on PostgreSQL cost what the batch costs, not what the queue or the network costs,
whatever the planner's statistics say (issue 18, docs/scale.md): each is run as relay runs it, then measured with
EXPLAIN ANALYZE on a queue just planned (no statistics yet) and rolled back."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text

from relay.infra.db import make_engine
from relay.outbound import bulk
from relay.outbound.deliveries import claim_many
from tests.helpers import explained, plan_nodes, rows_looked_at

BATCH = 250  # a bulk task's


def _queue(engine, n: int, members: int = 0) -> int:
    """n queued deliveries (to `members` members, round robin, when there are any); the first delivery id."""
    with engine.begin() as conn:
        if members:
            conn.execute(text(
                "INSERT INTO members (name, short_name, phone, email, timezone, language, roles, active,"
                " sms_discussion, email_discussion, email_hard_bounces, created_at, updated_at)"
                " SELECT 'Member ' || i, 'M' || i, '+1202' || lpad(i::text, 7, '0'), 'member' || i || '@example.org',"
                " 'UTC', 'en', 'member', true, true, false, 0, now(), now() FROM generate_series(1, :n) AS i"),
                {"n": members})
        first_member = conn.execute(text("SELECT min(id) FROM members")).scalar() if members else None
        conn.execute(text(
            "INSERT INTO deliveries (dedupe_key, purpose, channel, to_address, body, status, attempts, member_id,"
            " created_at, updated_at) SELECT 'test:' || i, 'notice', 'sms', '+1202555' || i, repeat('x', 200),"
            " 'queued', 0, CASE WHEN :members > 0 THEN :first + i % :members END, now(), now()"
            " FROM generate_series(1, :n) AS i"), {"n": n, "members": members, "first": first_member or 0})
        return conn.execute(text("SELECT min(id) FROM deliveries")).scalar()


def test_claiming_a_batch_reads_the_batch_not_the_whole_queue(postgres_only_url):
    """A bulk task's claim (deliveries.claim_many) is `id = ANY(batch) AND claimable`. The claimable part
    matches ix_deliveries_status, and while a broadcast is being sent every row of its queue is in that index: a
    planner that found the queued rows few (no statistics yet, or a history of mostly sent deliveries) read all
    of them to claim 250, 16-28 ms a batch against 3-5 ms at 12,000 queued, and growing with the queue."""
    engine = make_engine(postgres_only_url)
    first = _queue(engine, 20_000)
    batch = list(range(first + 3000, first + 3000 + BATCH))

    def claim(session):
        assert claim_many(session, batch, timedelta(minutes=5)) == batch

    scan, = explained(engine, claim, "UPDATE")["Plans"]  # what found the rows to claim
    assert scan["Actual Rows"] == BATCH
    assert rows_looked_at(scan) <= 2 * BATCH, json.dumps(scan, indent=1)  # not the 20,000 queued
    engine.dispose()


def test_loading_a_batch_looks_up_its_members_not_the_whole_network(postgres_only_url):
    """bulk._load reads the claimed deliveries with their members. As a plain join the planner hashed the whole
    members table for every batch (a 10,000-member network: 4-7 ms a batch against ~1 ms; at 100,000 members,
    ten times that, for each of the broadcast's 480 batches)."""
    engine = make_engine(postgres_only_url)
    first = _queue(engine, 12_000, members=10_000)
    batch = list(range(first + 3000, first + 3000 + BATCH))

    def load(session):
        rows = bulk._load(session, batch)
        assert [d.id for d, _ in rows] == batch and all(m is not None and m.id == d.member_id for d, m in rows)

    plan = explained(engine, load, "SELECT")
    members = [node for node in plan_nodes(plan) if node.get("Relation Name") == "members"]
    assert members and sum(rows_looked_at(node) for node in members) <= 2 * BATCH, json.dumps(plan, indent=1)
    engine.dispose()


def test_recording_a_batch_accepted_finds_the_batch_by_key(postgres_only_url):
    """bulk._record_accepted joins the batch's ids and provider ids to the deliveries. With the join alone, a
    planner that thought the table small (a queue just planned) hashed the batch and read every delivery."""
    from relay.model.tables import utcnow

    engine = make_engine(postgres_only_url)
    first = _queue(engine, 20_000)
    batch = list(range(first + 3000, first + 3000 + BATCH))

    def record(session):
        bulk._record_accepted(session, [(d, f"SM{d}") for d in batch], utcnow())

    plan = explained(engine, record, "UPDATE")
    deliveries = [node for node in plan_nodes(plan) if node.get("Relation Name") == "deliveries"]
    assert deliveries and sum(rows_looked_at(node) for node in deliveries) <= 2 * BATCH, json.dumps(plan, indent=1)
    engine.dispose()
