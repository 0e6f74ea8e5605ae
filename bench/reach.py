"""The Reach page on a year of data (issue 20, item 6), for `make bench` (BENCH_ONLY=reach): in a fresh
PostgreSQL database, 100,000 members, 3,000,000 deliveries over 365 days, 100,000 replies, 200 cases
viewed every day, a year of readers and 20,000 consent changes, all made with generate_series; the
sweeper's rollups and countries snapshot brought up to date; then /console/reach loaded through the real
Flask app (a signed-in coordinator) five times per period after one warm load. The target: the median
load under 300 ms. `generate` is shared with tests/unit/reach/test_scale.py, which checks at a small
scale that the page's figures are the rows' and that its queries read rollups and indexes.

Alone: `.venv/bin/python -m bench.reach` (BENCH_REACH_DELIVERIES=300000 for a quick look); in the table:
`BENCH_ONLY=reach make bench`."""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUDGET_MS = 300
PERIODS = ("30d", "12m")
RUNS = 5


@dataclass(frozen=True)
class Scale:
    members: int = 100_000
    deliveries: int = 3_000_000
    replies: int = 100_000
    cases: int = 200
    consent_events: int = 20_000


# BENCH_QUICK=1 (`make bench BENCH_QUICK=1`, under 3 minutes): a tenth of the deliveries, as for a quick look;
# the figure against the 300 ms target is the full year's.
QUICK_DELIVERIES = 300_000
FULL = Scale(deliveries=int(os.environ.get("BENCH_REACH_DELIVERIES") or (
    QUICK_DELIVERIES if os.environ.get("BENCH_QUICK", "") not in ("", "0") else 3_000_000)))


DELIVERIES = """INSERT INTO deliveries (dedupe_key, purpose, channel, to_address, body, status, error_code, attempts,
                created_at, updated_at, member_id)
            SELECT 'scale:' || i, 'notice', CASE WHEN i % 3 = 0 THEN 'email' ELSE 'sms' END, 'x', 'b',
                   (ARRAY['delivered','delivered','delivered','sent','failed','opted_out','undelivered',
                          'opted_out'])[1 + i % 8],
                   CASE WHEN i % 8 = 7 THEN 'preferences' END, 1,
                   :start + (i::float / {total}) * interval '365 days',
                   :start + (i::float / {total}) * interval '365 days', NULL
            FROM generate_series({first}, {last}) AS i"""


def deliveries(scale: Scale, parts: int = 1) -> list[str]:
    """The year's deliveries (most of the data) as `parts` statements over consecutive ranges of i: together
    the same rows as one, and on connections of their own they are written on every core at once."""
    step = -(-scale.deliveries // parts)
    return [DELIVERIES.format(total=scale.deliveries, first=first, last=min(scale.deliveries, first + step - 1))
            for first in range(1, scale.deliveries + 1, step)]


def statements(scale: Scale, with_deliveries: bool = True) -> list[str]:
    """The year of data, relative to :start (the first day, midnight UTC); with_deliveries=False leaves out
    the deliveries (deliveries() writes them)."""
    return [
        # members: mostly Korean numbers, a tenth each French and American, 1 % without a phone (placed by
        # their time zone: a fifth of those in Europe/Berlin, the rest UTC, which names no country)
        f"""INSERT INTO members (name, short_name, phone, email, timezone, language, roles, active, sms_discussion,
                email_discussion, email_hard_bounces, created_at, updated_at)
            SELECT 'Member ' || i, 'M' || i,
                   CASE WHEN i % 100 = 0 THEN NULL
                        WHEN i % 10 = 1 THEN '+336' || lpad(i::text, 8, '0')
                        WHEN i % 10 = 2 THEN '+1212' || (2000000 + i)::text
                        ELSE '+8210' || lpad(i::text, 8, '0') END,
                   'm' || i || '@example.org',
                   CASE WHEN i % 100 = 0 AND i % 500 = 0 THEN 'Europe/Berlin' WHEN i % 100 = 0 THEN 'UTC'
                        ELSE 'Asia/Seoul' END,
                   'en', 'member', true, true, true, 0, now(), now()
            FROM generate_series(1, {scale.members}) AS i ON CONFLICT DO NOTHING""",
        f"""INSERT INTO cases (number, title, chief_complaint, symptoms, exposure_history, findings, status, visibility,
                views, created_at)
            SELECT 1000 + i, 'Case ' || i, '', '', '', '', 'open', 'public', 0, now()
            FROM generate_series(1, {scale.cases}) i""",
        "INSERT INTO threads (case_id, created_at) SELECT id, now() FROM cases WHERE number > 1000",
        *(deliveries(scale) if with_deliveries else []),
        f"""INSERT INTO posts (thread_id, kind, channel, body, created_at)
            SELECT (SELECT max(id) FROM threads) - i % {scale.cases}, 'reply',
                   CASE WHEN i % 4 = 0 THEN 'email' ELSE 'sms' END,
                   'r', :start + (i::float / {scale.replies}) * interval '365 days'
            FROM generate_series(1, {scale.replies}) AS i""",
        """INSERT INTO reach_case_views (case_id, day, views)
            SELECT c.id, (:start + d * interval '1 day')::date, 1 + (c.id + d) % 40
            FROM cases c, generate_series(0, 364) AS d""",
        """INSERT INTO reach_readers (day, visitors, members)
            SELECT (:start + d * interval '1 day')::date, 500 + d % 300, 40 + d % 20
            FROM generate_series(0, 364) AS d""",
        f"""INSERT INTO consent_events (member_id, channel, action, source, created_at)
            SELECT (SELECT min(id) FROM members) + i % LEAST(1000, {scale.members}), 'sms',
                   CASE WHEN i % 3 = 0 THEN 'opt_out' ELSE 'digest' END, 'sms:STOP',
                   :start + (i::float / {scale.consent_events}) * interval '365 days'
            FROM generate_series(1, {scale.consent_events}) AS i""",
        # the counter of deliveries the ladder dropped when planned: a few a day
        """INSERT INTO reach_daily (day, series, label, count)
            SELECT (:start + d * interval '1 day')::date, 'held_back', 'sms', 1 + d % 5
            FROM generate_series(0, 364) AS d""",
    ]


def generate(services, today: date, scale: Scale) -> dict:
    """Make the year of data ending `today` and bring the sweeper's rollups and countries snapshot up to
    date, as the sweeper would; returns the seconds each part took."""
    from concurrent.futures import ThreadPoolExecutor

    from relay.infra.db import transaction
    from relay.reach.days import midnight
    from relay.reach.rollups import refresh_member_countries, roll_up, snapshot_countries

    start = midnight(today - timedelta(days=364))
    began = time.perf_counter()
    each = []

    def run(statement: str) -> None:
        with transaction(services.sessions) as session:
            at = time.perf_counter()
            session.execute(text(statement), {"start": start} if ":start" in statement else {})
            each.append(round(time.perf_counter() - at, 1))

    # The deliveries, most of the time, in one part per core on connections of their own (issue 18 item 6:
    # the bench's own set-up), the rest meanwhile, one statement after the other, in one transaction.
    parts = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(parts) as pool:
        written = [pool.submit(run, statement) for statement in deliveries(scale, parts)]
        with transaction(services.sessions) as session:
            for statement in statements(scale, with_deliveries=False):
                at = time.perf_counter()
                session.execute(text(statement), {"start": start} if ":start" in statement else {})
                each.append(round(time.perf_counter() - at, 1))
        for future in written:
            future.result()
    generated = time.perf_counter() - began
    began = time.perf_counter()
    with transaction(services.sessions) as session:
        while refresh_member_countries(session, limit=50_000):
            pass
        roll_up(session, today, max_days=400)
        snapshot_countries(session, today)
    with services.engine.connect() as conn:  # what autovacuum does after such a load
        conn.execute(text("ANALYZE"))
    return {"generated_s": round(generated, 1), "statements_s": each, "rollups_s": round(time.perf_counter() - began, 1)}


def coordinator_client(services):
    """A Flask test client of the real app with a coordinator signed in (reading English)."""
    from relay.access.accounts import set_password
    from relay.infra.db import transaction
    from relay.model.tables import Member
    from tests.console_helpers import PASSWORD, reads_english, sign_in
    from webhooks.app import create_app

    with transaction(services.sessions) as session:
        member = Member(name="Bench Coordinator", short_name="Bench", email="bench-coordinator@example.org",
                        roles="coordinator;member", timezone="UTC")
        session.add(member)
        session.flush()
        set_password(session, member, PASSWORD)
    client = reads_english(create_app(services=services).test_client())
    sign_in(client, "bench-coordinator@example.org")
    return client


def time_page(client) -> dict:
    """Each period's page: one warm load, then RUNS timed loads (ms)."""
    timings = {}
    for period in PERIODS:
        assert client.get(f"/console/reach?period={period}").status_code == 200  # warm
        runs = []
        for _ in range(RUNS):
            began = time.perf_counter()
            page = client.get(f"/console/reach?period={period}")
            runs.append(round((time.perf_counter() - began) * 1000, 1))
            assert page.status_code == 200
        timings[period] = runs
    return timings


def reach(bench) -> dict:
    """The workload of bench/run.py: a database of its own, the year of data, the page timed."""
    from bench.run import OUT, REDIS_URL
    from relay.infra.settings import Settings
    from relay.model.tables import utcnow
    from relay.services import build_services
    from tests.e2e.processes import relay_env

    with bench.phase("reach: database"):
        url = bench.database("reach")
    services = build_services(Settings.from_env(relay_env(  # the page sends nothing: no providers
        DATABASE_URL=url, BROKER_URL=REDIS_URL, BROKER_PREFIX=bench.prefix, VAR_DIR=str(OUT / "var"),
        SECRET_KEY="bench-secret-key", LOG_LEVEL="WARNING")))
    try:
        today = utcnow().date()
        with bench.phase("reach: a year of data and rollups"):
            prepared = generate(services, today, FULL)
        client = coordinator_client(services)
        with bench.phase("reach: page loads"):
            timings = time_page(client)
    finally:
        services.dispose()
    medians = {period: statistics.median(runs) for period, runs in timings.items()}
    return {"members": FULL.members, "deliveries": FULL.deliveries, "replies": FULL.replies, **prepared,
            "runs_ms": timings, "median_ms": medians, "max_ms": {p: max(r) for p, r in timings.items()},
            "within_budget": all(m < BUDGET_MS for m in medians.values())}


def row(result: dict) -> tuple:
    """The workload's row in bench/run.py's table."""
    medians = result["median_ms"]
    return (f"Reach page (a year: {result['members']:,} members, {result['deliveries']:,} deliveries)",
            "; ".join(f"{p} median {medians[p]:.0f} ms (max {result['max_ms'][p]:.0f})" for p in medians),
            "", "", f"< {BUDGET_MS} ms" + ("" if result["within_budget"] else " MISSED"),
            f"data made in {result['generated_s']} s, rollups and countries {result['rollups_s']} s; "
            f"{RUNS} loads per period after a warm one, Flask app in-process")


if __name__ == "__main__":
    from bench.run import Bench, table

    bench = Bench()
    try:
        result = reach(bench)
    finally:
        bench.close()
    print(table({"reach": result}))
