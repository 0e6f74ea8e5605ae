"""The Reach page's numbers (issue 20, item 2): per period, from the rows — and the same numbers after the
sweeper's rollup of settled days as before it; authorised in the core (reach.read)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from sqlalchemy import delete, select, update

from relay.access.permissions import Forbidden
from relay.infra.db import transaction
from relay.model.tables import Delivery, Member
from relay.reach.figures import reach_figures
from relay.reach.periods import PeriodError, month, parse_period
from relay.reach.rollups import DAYS_PER_SWEEP, refresh_member_countries, roll_up, rolled_until
from tests.unit.reach.seed import TODAY, at, seed

STAFF = frozenset({"coordinator", "member"})


def figures(services, **args):
    with services.sessions() as session:
        return reach_figures(session, STAFF, parse_period(args, TODAY))


def test_periods():
    assert parse_period({}, TODAY).start == TODAY - timedelta(days=29)
    assert parse_period({"period": "12m"}, TODAY).start == TODAY - timedelta(days=364)
    custom = parse_period({"period": "custom", "from": "2026-11-01", "to": "2026-11-07"}, TODAY)
    assert (custom.start, custom.end, len(custom.days)) == (date(2026, 11, 1), date(2026, 11, 7), 7)
    assert month("2026-12").end == date(2026, 12, 31) and month("2026-02").end == date(2026, 2, 28)
    for bad, says in [({"period": "week"}, "choose 30d"), ({"period": "custom", "from": "2026-11-09", "to": "2026-11-01"},
                      "swap"), ({"period": "custom", "from": "yesterday", "to": "2026-11-01"}, "YYYY-MM-DD"),
                      ({"period": "custom", "from": "2020-01-01", "to": "2026-11-01"}, "at most")]:
        with pytest.raises(PeriodError, match=says):
            parse_period(bad, TODAY)


def test_a_member_may_not_read_the_figures(network):
    with network.sessions() as session, pytest.raises(Forbidden):
        reach_figures(session, frozenset({"member"}), parse_period({}, TODAY))


def test_the_figures_of_the_last_30_days(network):
    seed(network)
    found = figures(network)
    days = [TODAY - timedelta(days=n) for n in range(30)]  # n = 0..29 days ago
    assert len(found.readers.rows) == 30
    assert found.readers.totals() == [sum(n + 2 for n in range(30)), 30]
    assert found.cases.rows == [["C1", "Fever and ground-glass opacities", sum(n + 1 for n in range(30))],
                                ["C2", "Second case", 10]]
    assert found.deliveries.headers == ["channel", "delivered", "failed"]
    assert dict((row[0], row[1:]) for row in found.deliveries.rows) == {
        "sms": [sum(n % 3 + 1 for n in range(30)), 0], "email": [0, 30]}
    assert found.replies.headers == ["day", "sms"] and found.replies.totals() == [15]
    assert found.notices_sent == 1
    assert sum(row[1] for row in found.consent.rows) == 5 and sum(row[2] for row in found.consent.rows) == 5
    assert found.readers.rows[-1][0] == days[0].isoformat()


def test_the_rollup_changes_no_figure(network):
    seed(network)
    before = [figures(network, period=p) for p in ("30d", "12m")]
    with transaction(network.sessions) as session:
        assert roll_up(session, TODAY, max_days=400) == 39  # every closed day: 39..1 days ago
        assert rolled_until(session) == TODAY
        assert roll_up(session, TODAY, max_days=400) == 0  # nothing new to roll up
    after = [figures(network, period=p) for p in ("30d", "12m")]
    for old, new in zip(before, after):
        for name in ("deliveries", "replies"):
            assert old.table(name).rows == new.table(name).rows
    # the page reads settled days from the rollup and later days from the rows: a delivery removed from
    # a settled day still counts (rolled up), one removed from today does not
    with transaction(network.sessions) as session:
        for ago in (20, 0):
            session.execute(delete(Delivery).where(Delivery.channel == "email", Delivery.created_at >= at(TODAY - timedelta(days=ago)),
                                                   Delivery.created_at < at(TODAY - timedelta(days=ago - 1))))
    assert dict((row[0], row[1:]) for row in figures(network).deliveries.rows)["email"] == [0, 29]


def test_members_by_country_from_their_numbers(network):
    with transaction(network.sessions) as session:
        assert refresh_member_countries(session) == 5
        assert refresh_member_countries(session) == 0  # read once, until the number changes
    found = figures(network)
    assert found.countries.rows == [["KR", 3, 3, 0], ["FR", 1, 1, 0], ["US", 1, 1, 0]] and found.country_count == 3
    assert found.unplaced == 0
    from relay.model.tables import Member

    with transaction(network.sessions) as session:
        session.get(Member, 4).phone = "+12025550199"  # Alice moves to the US
    assert figures(network).unplaced == 1  # not read yet: not counted in a stale country
    with transaction(network.sessions) as session:
        assert refresh_member_countries(session) == 1
    found = figures(network)
    assert found.countries.rows == [["KR", 3, 3, 0], ["US", 2, 2, 0]] and found.country_count == 2


def test_the_sweeper_keeps_the_rollups_and_a_countries_snapshot_the_page_reads(network):
    from relay.sweeper import sweep

    seed(network)
    with time_machine.travel(at(TODAY), tick=False):
        sweep(network)
        with network.sessions() as session:  # 31 days a sweep: the 39 closed days take two
            assert rolled_until(session) == TODAY - timedelta(days=39 - DAYS_PER_SWEEP)
        sweep(network)
        with network.sessions() as session:
            assert rolled_until(session) == TODAY
        assert figures(network).countries.rows == [["KR", 3, 3, 0], ["FR", 1, 1, 0], ["US", 1, 1, 0]]
        with transaction(network.sessions) as session:
            session.get(Member, 1).active = False  # read from the snapshot: not seen until the next one
        assert figures(network).country_count == 3 and figures(network).countries.rows[0][:2] == ["KR", 3]
        sweep(network)  # nothing new placed, the snapshot is fresh: kept
        assert figures(network).countries.rows[0][:2] == ["KR", 3]
    with time_machine.travel(at(TODAY) + timedelta(minutes=11), tick=False):
        sweep(network)  # ten minutes on: taken again
        assert figures(network).countries.rows[0][:2] == ["KR", 2]


def test_the_last_days_are_rolled_up_again_for_late_statuses(network):
    seed(network)
    now = at(TODAY)
    with transaction(network.sessions) as session:
        roll_up(session, TODAY, max_days=400, now=now)
    three_days_ago = (at(TODAY - timedelta(days=3), 0), at(TODAY - timedelta(days=2), 0))
    with transaction(network.sessions) as session:  # a late callback: the email was delivered after all
        session.execute(update(Delivery).where(Delivery.channel == "email", Delivery.created_at >= three_days_ago[0],
                                               Delivery.created_at < three_days_ago[1]).values(status="delivered"))
    email = lambda: dict((row[0], row[1:]) for row in figures(network).deliveries.rows)["email"]  # noqa: E731
    assert email() == [0, 30]  # the rollup still says failed
    with transaction(network.sessions) as session:
        roll_up(session, TODAY, now=now + timedelta(minutes=5))
    assert email() == [0, 30]
    with transaction(network.sessions) as session:
        roll_up(session, TODAY, now=now + timedelta(minutes=11))
    assert email() == [1, 29]


def test_members_without_a_placing_number_are_placed_by_their_time_zone(network):
    """Issue 20: countries "from their numbers and time zones": the number first; the time zone when the
    number names no country (no phone, e.g. an email-only member); neither (UTC): not placed."""
    from relay.reach.rollups import snapshot_countries

    with transaction(network.sessions) as session:
        for n, zone in enumerate(["Europe/Berlin", "Asia/Seoul", "UTC", "Etc/GMT+3"]):
            session.add(Member(name=f"Email only {n}", short_name=f"E{n}", email=f"e{n}@example.org", timezone=zone))
        session.add(Member(name="Away", short_name="A", email="away@example.org", timezone="Europe/Berlin",
                           active=False))
        refresh_member_countries(session)
    expected = [["KR", 4, 3, 1], ["DE", 1, 0, 1], ["FR", 1, 1, 0], ["US", 1, 1, 0]]
    found = figures(network)  # counted from the rows (no snapshot yet)
    assert found.countries.headers == ["country", "members", "by number", "by time zone"]
    assert found.countries.rows == expected and found.country_count == 4 and found.unplaced == 2
    with transaction(network.sessions) as session:
        snapshot_countries(session, TODAY)
    found = figures(network)  # read from the sweeper's snapshot
    assert found.countries.rows == expected and found.country_count == 4 and found.unplaced == 2
    with transaction(network.sessions) as session:
        session.scalar(select(Member).where(Member.email == "e0@example.org")).phone = "+33612345699"
    found = figures(network)
    assert found.countries.rows == expected  # the snapshot until the sweeper reads the new number
    with transaction(network.sessions) as session:
        refresh_member_countries(session)
        snapshot_countries(session, TODAY)
    found = figures(network)
    assert found.countries.rows == [["KR", 4, 3, 1], ["FR", 2, 2, 0], ["US", 1, 1, 0]] and found.country_count == 3


def test_a_time_zone_names_a_country_through_cldr():
    from relay.reach.rollups import country_of_zone

    assert [country_of_zone(z) for z in ("Asia/Seoul", "Europe/Paris", "America/New_York", "Asia/Kolkata",
                                         "Asia/Calcutta", "US/Eastern", "Europe/Kyiv")] == [
        "KR", "FR", "US", "IN", "IN", "US", "UA"]
    assert [country_of_zone(z) for z in ("UTC", "Etc/GMT+3", "", None, "Not/AZone")] == [""] * 5
