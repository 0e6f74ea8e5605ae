"""Reach for one case (views per day, posts per day by channel) and one notice (the delivery timeline per
channel), in the core and on the console's pages (issue 20, item 3)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from relay.access.permissions import Forbidden
from relay.infra.db import transaction
from relay.model.notice_refs import delivery_key
from relay.model.tables import Case, Delivery, Member, Notice
from relay.reach.items import case_activity, case_views, notice_timeline
from relay.reach.periods import parse_period
from tests.console_helpers import KIM, give_password, sign_in
from tests.unit.reach.seed import TODAY, at, seed
from webhooks.app import create_app

STAFF = frozenset({"coordinator"})


def sent_notice(services, offsets: dict[str, list[float]]) -> int:
    """A general notice sent at noon today, its deliveries handed over `offsets` minutes later."""
    with transaction(services.sessions) as session:
        notice = Notice(kind="announcement", lists="tft", title="Timeline", status="sent", sent_at=at(TODAY))
        session.add(notice)
        session.flush()
        members = list(session.scalars(select(Member.id).order_by(Member.id)))
        n = 0
        for channel, minutes in offsets.items():
            for minute in minutes:
                session.add(Delivery(dedupe_key=delivery_key(notice.id, members[n % 5], channel) + f":{n}",
                                     purpose="notice", channel=channel, to_address="x", body="b", status="sent",
                                     created_at=at(TODAY), sent_at=at(TODAY) + timedelta(minutes=minute)))
                n += 1
        session.add(Delivery(dedupe_key=delivery_key(notice.id, members[0], "sms") + ":queued", purpose="notice",
                             channel="sms", to_address="x", body="b", status="queued", created_at=at(TODAY)))
        return notice.id


def test_the_delivery_timeline_per_channel(network):
    notice_id = sent_notice(network, {"sms": [0.1, 0.5, 1.2, 3.9], "email": [0.2, 0.3]})
    with network.sessions() as session:
        notice = session.get(Notice, notice_id)
        table, bucket = notice_timeline(session, STAFF, notice)
        assert bucket == 1 and table.headers == ["minutes", "sms", "email"]
        assert table.rows == [["0", 2, 2], ["1", 1, 0], ["2", 0, 0], ["3", 1, 0]]  # the queued one is not yet out
        with pytest.raises(Forbidden):
            notice_timeline(session, frozenset({"member"}), notice)


def test_a_slow_notice_is_drawn_in_longer_buckets(network):
    notice_id = sent_notice(network, {"sms": [0, 70, 200]})
    with network.sessions() as session:
        table, bucket = notice_timeline(session, STAFF, session.get(Notice, notice_id))
    assert bucket == 5 and table.rows[0] == ["0", 1] and table.rows[14] == ["70", 1] and len(table.rows) == 41


def test_case_views_and_activity_per_day(network):
    seed(network)
    period = parse_period({"period": "custom", "from": (TODAY - timedelta(days=2)).isoformat(),
                           "to": TODAY.isoformat()}, TODAY)
    with network.sessions() as session:
        case = session.scalar(select(Case).where(Case.number == 1))
        assert case_views(session, STAFF, case, period).rows == [
            [(TODAY - timedelta(days=2)).isoformat(), 3], [(TODAY - timedelta(days=1)).isoformat(), 2],
            [TODAY.isoformat(), 1]]
        assert case_activity(session, STAFF, case, period).rows == [
            [(TODAY - timedelta(days=2)).isoformat(), 1], [(TODAY - timedelta(days=1)).isoformat(), 0],
            [TODAY.isoformat(), 1]]


def test_the_console_pages(network):
    seed(network)
    notice_id = sent_notice(network, {"sms": [0.5]})
    give_password(network, KIM)
    client = create_app(services=network).test_client()
    with time_machine.travel(at(TODAY), tick=False):
        sign_in(client, KIM)
        case_page = client.get("/console/reach/cases/C1?lang=ko")
        notice_page = client.get(f"/console/reach/notices/{notice_id}?lang=en")  # Kim's own language is Korean
        assert client.get("/console/reach/cases/C99").status_code == 404
        assert client.get("/console/reach/notices/999").status_code == 404
        assert "/console/reach/cases/C1" in client.get("/console/cases/C1").get_data(as_text=True)
    html = case_page.get_data(as_text=True)
    assert case_page.status_code == 200 and html.count('role="img"') == 2 and "일별 조회수" in html
    html = notice_page.get_data(as_text=True)
    assert notice_page.status_code == 200 and html.count('role="img"') == 1 and "1 deliveries handed over" in html
