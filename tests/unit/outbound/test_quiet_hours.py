"""Quiet hours, with a frozen clock: a routine notice sent at 23:00 local time arrives at 07:00; an urgent
one at once; one that expires while waiting is never sent (status recorded). Relayed posts wait too."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from relay.inbound.sms import process_inbound
from relay.infra.db import transaction
from relay.members import ladder
from relay.model.tables import Delivery, Member
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from relay.sweeper import sweep
from tests.conftest import make_settings, run_worker
from tests.helpers import deliveries, member, record_sms

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
NEW_YORK = ZoneInfo("America/New_York")
# 23:00 on Friday 27 November 2026 in New York (EST, UTC-5) is 04:00 UTC on the 28th.
LATE_EVENING = datetime(2026, 11, 27, 23, 0, tzinfo=NEW_YORK)


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path / "var", database_url, quiet_hours="22:00-07:00")


def send(services, severity="routine", expires_in=None, now=None) -> int:
    with transaction(services.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Ward rounds moved", body="text",
                                  lists=["us"], severity=severity, channels="sms",
                                  expires_at=now + expires_in if expires_in else None, now=now).id
    send_notice(services, notice_id, now=now)
    return notice_id


def at(local: datetime):
    return time_machine.travel(local.astimezone(timezone.utc), tick=False)


def ben_texts(sms) -> list:
    return [m for m in sms.sent if m.to == BEN]


@pytest.mark.parametrize("start,end,now,expected", [
    ("22:00", "07:00", datetime(2026, 11, 27, 23, 0, tzinfo=NEW_YORK), datetime(2026, 11, 28, 7, 0, tzinfo=NEW_YORK)),
    ("22:00", "07:00", datetime(2026, 11, 28, 3, 0, tzinfo=NEW_YORK), datetime(2026, 11, 28, 7, 0, tzinfo=NEW_YORK)),
    ("22:00", "07:00", datetime(2026, 11, 28, 7, 0, tzinfo=NEW_YORK), None),
    ("22:00", "07:00", datetime(2026, 11, 27, 21, 59, tzinfo=NEW_YORK), None),
    ("12:00", "14:00", datetime(2026, 11, 27, 13, 0, tzinfo=NEW_YORK), datetime(2026, 11, 27, 14, 0, tzinfo=NEW_YORK)),
    ("00:00", "00:00", datetime(2026, 11, 27, 23, 0, tzinfo=NEW_YORK), None),
    # The night the clocks go back (1 November 2026, 02:00 EDT -> 01:00 EST): 07:00 is EST, a 10-hour night.
    ("22:00", "07:00", datetime(2026, 10, 31, 23, 0, tzinfo=NEW_YORK), datetime(2026, 11, 1, 7, 0, tzinfo=NEW_YORK)),
])
def test_quiet_until_is_the_end_of_the_local_window(start, end, now, expected):
    found = ladder.quiet_until("America/New_York", start, end, now.astimezone(timezone.utc))
    assert found == (expected.astimezone(timezone.utc) if expected else None)


def test_routine_notice_at_23_local_arrives_at_07(network, sms):
    with at(LATE_EVENING):
        send(network, now=LATE_EVENING.astimezone(timezone.utc))
        run_worker(network)
        assert ben_texts(sms) == []
        [waiting] = deliveries(network, member_id=member(network, BEN).id)
        assert waiting.status == "queued"
        assert waiting.next_attempt_at == datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)  # 07:00 EST
    with at(LATE_EVENING + timedelta(hours=7, minutes=59)):  # 06:59: the sweeper leaves it waiting
        sweep(network)
        run_worker(network)
        assert ben_texts(sms) == []
    with at(LATE_EVENING + timedelta(hours=8, seconds=30)):  # 07:00:30
        sweep(network)
        run_worker(network)
        [text] = ben_texts(sms)
        [sent] = deliveries(network, member_id=member(network, BEN).id)
        assert sent.status == "accepted"
        assert sent.sent_at.astimezone(NEW_YORK).strftime("%H:%M") == "07:00"


def test_urgent_notice_at_23_local_goes_at_once(network, sms):
    with at(LATE_EVENING):
        send(network, severity="urgent", now=LATE_EVENING.astimezone(timezone.utc))
        run_worker(network)
        assert len(ben_texts(sms)) == 1


def test_notice_that_expires_while_waiting_is_never_sent(network, sms):
    with at(LATE_EVENING):
        send(network, expires_in=timedelta(hours=3), now=LATE_EVENING.astimezone(timezone.utc))
        run_worker(network)
    with at(LATE_EVENING + timedelta(hours=8, seconds=30)):
        sweep(network)
        run_worker(network)
    assert ben_texts(sms) == []
    [dropped] = deliveries(network, member_id=member(network, BEN).id)
    assert (dropped.status, dropped.error_code) == ("failed", "expired")


def test_relayed_posts_wait_for_each_members_own_morning(network, sms):
    """At 04:00 UTC it is 13:00 in Seoul (relayed at once) and 23:00 in New York (waits)."""
    with at(LATE_EVENING):
        new_case_notice(network, "C1", ["tft"])  # Ben is on tft too
        run_worker(network)
        sms.sent.clear()
        record_sms(network, LEE, "C1 relayed now to Seoul, in the morning to New York")
        run_worker(network)
        reached = {m.to for m in sms.sent}
        assert {KIM, PARK} <= reached and BEN not in reached
        assert ALICE not in reached  # 05:00 in Paris: still quiet there, until 07:00 Paris time


def test_a_reply_held_overnight_is_not_stale_in_the_morning(network, sms):
    """RELAY_RELAY_MAX_AGE (6 h) drops a reply relayed late; a reply that waited for the member's own
    quiet hours (here 8 h, 23:00 to 07:00) is on time when they end: the age counts the time it could go."""
    with at(LATE_EVENING):
        new_case_notice(network, "C1", ["tft"])
        run_worker(network)
        sms.sent.clear()
        record_sms(network, LEE, "C1 a reply for the morning")
        run_worker(network)
        assert BEN not in {m.to for m in sms.sent}
    with at(LATE_EVENING + timedelta(hours=8, seconds=30)):  # 07:00:30 in New York
        sweep(network)
        run_worker(network)
        [text] = [m for m in ben_texts(sms) if "a reply for the morning" in m.body]
        relayed = [d for d in deliveries(network, member_id=member(network, BEN).id) if d.purpose == "relay"]
        assert relayed and {(d.status, d.error_code) for d in relayed} == {("accepted", None)}  # each channel


def test_a_reply_late_for_other_reasons_is_still_stale(network, sms):
    """Seoul's afternoon is not quiet: a reply that could have gone and waited 6 h is dropped."""
    with at(LATE_EVENING):
        new_case_notice(network, "C1", ["tft"])
        run_worker(network)
        event_id = record_sms(network, LEE, "C1 held up by an outage")
        process_inbound(network, event_id)  # planned now; the sends wait (an outage)
    with at(LATE_EVENING + timedelta(hours=6, minutes=1)):  # 19:01 in Seoul, 05:01 in New York
        sweep(network)
        run_worker(network)
        relayed = {d.to_address: (d.status, d.error_code) for d in deliveries(network) if d.purpose == "relay"}
        assert relayed[KIM] == ("failed", "stale")
        assert relayed[BEN][0] == "queued"  # still night in New York: it waits for 07:00


def test_quiet_overlap_counts_the_member_s_night_on_their_own_clock():
    utc = timezone.utc
    eve = datetime(2026, 11, 27, 21, 0, tzinfo=NEW_YORK).astimezone(utc)
    assert ladder.quiet_overlap("America/New_York", "22:00", "07:00", eve, eve + timedelta(hours=11)) == \
        timedelta(hours=9)
    assert ladder.quiet_overlap("America/New_York", "22:00", "07:00", eve, eve + timedelta(hours=1)) == timedelta(0)
    assert ladder.quiet_overlap("America/New_York", "22:00", "07:00", eve, eve + timedelta(hours=35)) == \
        timedelta(hours=18)  # two nights
    assert ladder.quiet_overlap("America/New_York", "00:00", "00:00", eve, eve + timedelta(hours=11)) == timedelta(0)
    # the night the clocks go back is ten hours long
    fall = datetime(2026, 10, 31, 21, 0, tzinfo=NEW_YORK).astimezone(utc)
    assert ladder.quiet_overlap("America/New_York", "22:00", "07:00", fall, fall + timedelta(hours=13)) == \
        timedelta(hours=10)


def test_own_quiet_hours_replace_the_default(network, sms):
    with transaction(network.sessions) as session:
        ben = session.scalar(select(Member).where(Member.phone == BEN))
        ladder.set_quiet_hours(session, ben, "sms", "00:00", "00:00", "web:preferences")
    with at(LATE_EVENING):
        send(network, now=LATE_EVENING.astimezone(timezone.utc))
        run_worker(network)
        assert len(ben_texts(sms)) == 1
    with network.sessions() as session:
        assert session.scalars(select(Delivery.next_attempt_at)).all() == [None]


def test_an_expired_waiting_notice_is_never_sent_and_appears_in_the_next_digest(network, sms, mail):
    from relay.digests.building import run_digests
    from relay.members.subscriptions import ensure_member_subscription

    with transaction(network.sessions) as session:
        ben = session.scalar(select(Member).where(Member.phone == BEN))
        sub = ensure_member_subscription(session, ben, "email")  # Ben also reads the email digest
        sub.confirmed_at = LATE_EVENING.astimezone(timezone.utc) - timedelta(days=1)
    with at(LATE_EVENING):
        send(network, expires_in=timedelta(hours=3), now=LATE_EVENING.astimezone(timezone.utc))
        run_worker(network)
    morning = datetime(2026, 11, 28, 7, 0, tzinfo=NEW_YORK)
    with at(morning):  # the beat's digest run at 07:00 New York time, before the sweeper's next tick
        run_digests(network, now=morning.astimezone(timezone.utc))
        sweep(network)
        run_worker(network)
    assert ben_texts(sms) == []
    [dropped] = deliveries(network, member_id=member(network, BEN).id, channel="sms")
    assert (dropped.status, dropped.error_code) == ("failed", "expired")
    [digest] = [m for m in mail.sent if m.to == "ben@example.org"]
    from email import message_from_bytes, policy

    text = message_from_bytes(digest.raw, policy=policy.default).get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "NOTICES THAT EXPIRED DURING YOUR QUIET HOURS\n- Ward rounds moved" in text


def test_the_preview_counts_deliveries_that_will_wait_or_are_held_back(network):
    from relay.notices.preview import preview_notice

    with transaction(network.sessions) as session:
        alice = session.scalar(select(Member).where(Member.phone == ALICE))
        ladder.set_mode(session, alice, "email", "urgent_only", "test")
    with at(LATE_EVENING):  # 04:00 UTC: quiet in New York (23:00) and Paris (05:00), daytime in Seoul
        with transaction(network.sessions) as session:
            routine = create_notice(session, kind="announcement", title="t", body="b", lists=["tft"]).id
            urgent = create_notice(session, kind="announcement", title="t", body="b", lists=["tft"],
                                   severity="urgent").id
        with network.sessions() as session:
            seen = preview_notice(session, network.settings, routine)
            assert (seen.held_back, seen.waiting) == (1, 3)  # Alice's email; Alice's SMS and Ben's SMS and email
            seen = preview_notice(session, network.settings, urgent)
            assert (seen.held_back, seen.waiting) == (0, 0)
