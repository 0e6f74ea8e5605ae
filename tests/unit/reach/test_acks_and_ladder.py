"""The Reach page's last two charts (issue 20, item 2): deliveries held back by the ladder as an outcome
beside delivered, failed and opted out (counted when the ladder drops a planned delivery, which leaves no
row, and when it holds one back at send time), and the acknowledgement rate of each notice that asked for
acknowledgement (issue 17), by channel."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from relay.infra.db import transaction
from relay.members import ladder
from relay.model.notice_refs import delivery_key
from relay.model.tables import Delivery, Member, Notice
from relay.model.urgent import Acknowledgement
from relay.outbound import fanout
from relay.reach.figures import reach_figures
from relay.reach.periods import parse_period
from relay.reach.rollups import roll_up
from tests.unit.reach.seed import TODAY, at, seed

STAFF = frozenset({"coordinator", "member"})


def figures(services, **args):
    with services.sessions() as session:
        return reach_figures(session, STAFF, parse_period(args, TODAY))


def by_channel(table) -> dict[str, dict[str, int]]:
    return {row[0]: dict(zip(table.headers[1:], row[1:])) for row in table.rows}


def members(session) -> list[Member]:
    return list(session.scalars(select(Member).order_by(Member.id)))


def held_back_setting(services):
    """Park Seoyeon (member 3) takes only the digest by SMS: the ladder drops her routine notices."""
    with transaction(services.sessions) as session:
        ladder.set_mode(session, members(session)[2], "sms", "digest", "test")


def test_a_delivery_the_ladder_drops_when_planned_counts_as_held_back(network):
    seed(network)
    held_back_setting(network)
    with time_machine.travel(at(TODAY), tick=False), transaction(network.sessions) as session:
        third = members(session)[2]
        rows = [{"dedupe_key": f"held:{channel}", "purpose": "relay", "member_id": third.id, "channel": channel,
                 "to_address": "x", "body": "b"} for channel in ("sms", "email")]
        assert len(fanout.plan(session, rows)) == 1  # the SMS is dropped, the email goes
    found = by_channel(figures(network).deliveries)
    assert found["sms"]["held_back"] == 1 and found["email"].get("held_back", 0) == 0
    assert found["sms"]["delivered"] == sum(n % 3 + 1 for n in range(30))  # the rest as before
    assert "held_back" in figures(network).deliveries.headers


def test_a_set_wise_plan_the_ladder_shapes_counts_as_held_back(network):
    held_back_setting(network)
    with time_machine.travel(at(TODAY), tick=False), transaction(network.sessions) as session:
        for member in members(session)[:3]:
            session.add(Delivery(dedupe_key=delivery_key(99, member.id, "sms"), purpose="notice", channel="sms",
                                 to_address="x", body="b", member_id=member.id, created_at=at(TODAY)))
        session.flush()
        assert ladder.shape_planned(session, Delivery.dedupe_key.like("notice:99:%")) == 1
    found = by_channel(figures(network).deliveries)
    assert found["sms"]["held_back"] == 1 and found["sms"]["waiting"] == 2


def test_a_preview_counts_nothing(network):
    held_back_setting(network)
    with time_machine.travel(at(TODAY), tick=False), network.sessions() as session:
        third = members(session)[2]
        recipient = type("R", (), {"member_id": third.id, "channels": ("sms",)})()
        going, held, waiting = ladder.preview_split(session, [recipient], urgent=False, case_id=None)
        assert held == [(third.id, "sms")]
        session.commit()
    assert figures(network).deliveries.rows == []


def test_held_back_at_send_time_is_not_an_opt_out_and_survives_the_rollup(network):
    seed(network)
    held_back_setting(network)
    with time_machine.travel(at(TODAY), tick=False), transaction(network.sessions) as session:
        third = members(session)[2]
        fanout.plan(session, [{"dedupe_key": "held:plan", "purpose": "relay", "member_id": third.id,
                               "channel": "sms", "to_address": "x", "body": "b"}])
    with transaction(network.sessions) as session:  # send-time refusals, as relay/outbound/checks.py moves them
        for n, (status, code) in enumerate([("opted_out", "preferences"), ("opted_out", "opted_out")]):
            session.add(Delivery(dedupe_key=f"sendtime:{n}", purpose="relay", channel="sms", to_address="x",
                                 body="b", status=status, error_code=code, created_at=at(TODAY - timedelta(days=2))))
    before = by_channel(figures(network).deliveries)
    assert before["sms"]["held_back"] == 2 and before["sms"]["opted_out"] == 1
    with transaction(network.sessions) as session:
        roll_up(session, TODAY + timedelta(days=1), max_days=400)  # today rolled up too
    assert by_channel(figures(network).deliveries) == before
    weekly = figures(network).held_back
    assert weekly.headers == ["week", "sms"] and weekly.totals() == [2]
    this_week = TODAY - timedelta(days=TODAY.weekday())
    assert dict((row[0], row[1]) for row in weekly.rows) == {
        (this_week - timedelta(weeks=n)).isoformat(): int(n < 2) for n in range(6)}  # 2026-11-01 is a Sunday


# ---------------------------------------------------------------- acknowledgements


def ack_notice(session, title: str, sent_days_ago: int, ask: bool = True) -> Notice:
    notice = Notice(kind="announcement", lists="tft", title=title, status="sent", severity="urgent",
                    sent_at=at(TODAY - timedelta(days=sent_days_ago)), ack_within_s=3600 if ask else None)
    session.add(notice)
    session.flush()
    return notice


def send(session, notice: Notice, member: Member, channels=("sms",)) -> None:
    for channel in channels:
        session.add(Delivery(dedupe_key=delivery_key(notice.id, member.id, channel), purpose="notice",
                             channel=channel, to_address="x", body="b", status="delivered", member_id=member.id,
                             created_at=notice.sent_at))


@pytest.fixture
def acks(network):
    with transaction(network.sessions) as session:
        everyone = members(session)
        asked = ack_notice(session, "Masks now", 3)
        for member in everyone[:4]:
            send(session, asked, member, ("sms", "email") if member is everyone[0] else ("sms",))
        session.add(Acknowledgement(notice_id=asked.id, member_id=everyone[0].id, channel="sms",
                                    acknowledged_at=at(TODAY - timedelta(days=3), 13)))
        session.add(Acknowledgement(notice_id=asked.id, member_id=everyone[1].id, channel="web",
                                    acknowledged_at=at(TODAY - timedelta(days=3), 14)))
        later = ack_notice(session, "Second", 1)
        send(session, later, everyone[0])
        silent = ack_notice(session, "Not asked", 2, ask=False)
        send(session, silent, everyone[0])
        old = ack_notice(session, "Long ago", 60)
        send(session, old, everyone[0])
        return asked.id, later.id


def test_the_acknowledgement_rate_of_each_notice_that_asked_for_it(network, acks):
    asked, later = acks
    table = figures(network).acks
    assert table.headers == ["notice", "title", "rate", "recipients", "acknowledged", "sms", "web"]
    assert table.rows == [[f"#{later}", "Second", 0.0, 1, 0, 0, 0], [f"#{asked}", "Masks now", 50.0, 4, 2, 1, 1]]
    assert figures(network, period="custom", **{"from": "2026-09-01", "to": "2026-10-15"}).acks.rows[0][1] == "Long ago"


def test_no_acknowledgement_requested_in_the_period(network):
    assert figures(network).acks.rows == []
