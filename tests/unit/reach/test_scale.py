"""The Reach page's queries on a year of data, at a small scale, on PostgreSQL (issue 20, item 6).

The 300 ms figure with 100,000 members and 3,000,000 deliveries is a benchmark: `BENCH_ONLY=reach make bench`
(bench/reach.py) measures it and the README reports it. Here, on the same generated year at about a
hundredth of the size (bench.reach.statements), two fast checks that keep it true: the page's figures are
the rows' (rollups and live counts together), and no query the page makes scans a large table whole —
each reads a rollup or an index (EXPLAIN with sequential scans disabled, so a plan still showing one has
no index to use)."""
from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import event, func, select, text

from bench.reach import Scale, generate
from relay.infra.db import transaction
from relay.model.notice_refs import delivery_key
from relay.model.tables import Case, CaseDayViews, ConsentEvent, Delivery, Member, Notice, Post, ReachDaily, ReaderDay
from relay.model.urgent import Acknowledgement
from relay.reach.days import midnight
from relay.reach.figures import OUTCOMES, reach_figures
from relay.reach.periods import parse_period
from relay.reach.rollups import delivery_outcome, roll_up_day
from tests.unit.reach.seed import TODAY, at

SMALL = Scale(members=2_000, deliveries=30_000, replies=2_000, cases=30, consent_events=500)
STAFF = frozenset({"coordinator", "member"})
LARGE_TABLES = ("deliveries", "posts", "consent_events", "members", "reach_member_countries", "acknowledgements",
                "reach_case_views")


@pytest.fixture
def database_url(postgres_only_url):
    """PostgreSQL only: what its planner does is the point."""
    return postgres_only_url


@pytest.fixture
def year(network):
    with time_machine.travel(at(TODAY), tick=False):
        generate(network, TODAY, SMALL)
    with transaction(network.sessions) as session:  # a notice that asked for acknowledgement, 3 of 4 did
        notice = Notice(kind="announcement", lists="tft", title="Masks", status="sent", severity="urgent",
                        sent_at=at(TODAY - timedelta(days=5)), ack_within_s=3600)
        session.add(notice)
        session.flush()
        members = session.scalars(select(Member.id).order_by(Member.id).limit(4)).all()
        for n, member_id in enumerate(members):
            session.add(Delivery(dedupe_key=delivery_key(notice.id, member_id, "sms"), purpose="notice",
                                 channel="sms", to_address="x", body="b", status="delivered", member_id=member_id,
                                 created_at=notice.sent_at))
            if n:
                session.add(Acknowledgement(notice_id=notice.id, member_id=member_id, channel="sms"))
        session.flush()
        roll_up_day(session, notice.sent_at.date())  # as the sweeper's re-roll of the last days would
    return network


def page_figures(services):
    with services.sessions() as session:
        return reach_figures(session, STAFF, parse_period({"period": "12m"}, TODAY))


def test_the_figures_of_a_year_are_the_rows(year):
    found = page_figures(year)
    period = found.period
    start, end = midnight(period.start), midnight(period.end + timedelta(days=1))
    with year.sessions() as session:
        outcome = delivery_outcome()
        raw = Counter()
        for channel, status, n in session.execute(select(Delivery.channel, outcome, func.count()).where(
                Delivery.created_at >= start, Delivery.created_at < end).group_by(Delivery.channel, outcome)):
            raw[(channel, OUTCOMES.get(status, status))] += n
        for channel, n in session.execute(select(ReachDaily.label, func.sum(ReachDaily.count)).where(
                ReachDaily.series == "held_back").group_by(ReachDaily.label)):
            raw[(channel, "held_back")] += n
        replies = session.scalar(select(func.count()).select_from(Post).where(
            Post.kind == "reply", Post.created_at >= start, Post.created_at < end))
        readers = session.execute(select(func.sum(ReaderDay.visitors), func.sum(ReaderDay.members))).one()
        views = session.execute(select(Case.number, func.sum(CaseDayViews.views)).join(Case).group_by(Case.number)
                                .order_by(func.sum(CaseDayViews.views).desc(), Case.number).limit(20)).all()
        active = session.scalar(select(func.count()).select_from(Member).where(Member.active.is_(True)))
        berlin = session.scalar(select(func.count()).select_from(Member).where(
            Member.phone.is_(None), Member.timezone == "Europe/Berlin"))
        opt_outs = session.scalar(select(func.count()).select_from(ConsentEvent).where(
            ConsentEvent.action == "opt_out", ConsentEvent.created_at >= start, ConsentEvent.created_at < end))
    table = found.deliveries
    shown = {(row[0], outcome): n for row in table.rows for outcome, n in zip(table.headers[1:], row[1:]) if n}
    assert shown == dict(raw) and raw[("sms", "held_back")] > 0
    assert sum(found.held_back.totals()) == sum(n for (_, o), n in raw.items() if o == "held_back")
    assert sum(found.replies.totals()) == replies
    assert found.readers.totals() == list(readers)
    assert [(row[0], row[2]) for row in found.cases.rows] == [(f"C{number}", n) for number, n in views]
    assert sum(row[1] for row in found.countries.rows) + found.unplaced == active
    assert ["DE", berlin, 0, berlin] in found.countries.rows and berlin > 0
    assert sum(row[1] for row in found.consent.rows) == opt_outs
    assert [row[2:5] for row in found.acks.rows] == [[75.0, 4, 3]]


def test_no_query_of_the_page_scans_a_large_table(year):
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(year.engine, "before_cursor_execute", keep)
    try:
        page_figures(year)
    finally:
        event.remove(year.engine, "before_cursor_execute", keep)
    assert len(statements) >= 10
    scans = []
    with year.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))  # a plan that still scans has no index to use
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            for table in re.findall(r"Seq Scan on (\w+)", plan):
                if table in LARGE_TABLES:
                    scans.append((table, statement.split("FROM", 1)[-1][:160]))
    assert not scans, scans
