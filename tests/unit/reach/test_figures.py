"""The Reach page's numbers (issue 20, item 2): per period, from the rows — and the same numbers after the
sweeper's rollup of settled days as before it; authorised in the core (reach.read)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import delete

from relay.access.permissions import Forbidden
from relay.infra.db import transaction
from relay.model.tables import Delivery
from relay.reach.figures import reach_figures
from relay.reach.periods import PeriodError, month, parse_period
from relay.reach.rollups import SETTLE_DAYS, refresh_member_countries, roll_up, rolled_until
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
        assert roll_up(session, TODAY, max_days=400) == 40 - SETTLE_DAYS - 1  # days 39..8 ago
        assert rolled_until(session) == TODAY - timedelta(days=SETTLE_DAYS)
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
    assert found.countries.rows == [["KR", 3], ["FR", 1], ["US", 1]] and found.country_count == 3
    assert found.unplaced == 0
    from relay.model.tables import Member

    with transaction(network.sessions) as session:
        session.get(Member, 4).phone = "+12025550199"  # Alice moves to the US
    assert figures(network).unplaced == 1  # not read yet: not counted in a stale country
    with transaction(network.sessions) as session:
        assert refresh_member_countries(session) == 1
    found = figures(network)
    assert found.countries.rows == [["KR", 3], ["US", 2]] and found.country_count == 2
