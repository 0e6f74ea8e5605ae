"""The consent ladder by SMS: MUTE C123, UNMUTE, PAUSE 24H / 7D, DIGEST, URGENT ONLY, START, with STOP
still absolute. Each command is confirmed to the member and logged; fan-out honours every state."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import CaseMute, ChannelPreference, ConsentEvent, DigestSubscription, utcnow
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from relay.rules.keywords import keyword_of, ladder_command_of
from tests.conftest import run_worker
from tests.helpers import event, member, record_sms

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


@pytest.mark.parametrize("body,found", [
    ("MUTE C12", ("mute", "C12")), ("mute c12", ("mute", "C12")), (" Mute  #C7. ", ("mute", "C7")),
    ("mute 7", ("mute", "C7")), ("UNMUTE C3", ("unmute", "C3")), ("pause 24h", ("pause", "24H")),
    ("PAUSE 7D", ("pause", "7D")), ("pause 7 d", ("pause", "7D")), ("digest", ("digest", None)),
    ("Urgent only", ("urgent_only", None)), ("URGENTONLY", ("urgent_only", None)),
    ("digest tft", ("digest", "TFT")), ("DIGEST us", ("digest", "US")),
    ("mute the alarm in C12", None), ("pause", None), ("PAUSE 3D", None), ("digest this please", None),
    ("urgent", None), ("C12 mute", None),
])
def test_ladder_commands_match_only_the_whole_message(body, found):
    assert ladder_command_of(body) == found
    assert keyword_of(body) is None


def log(services, phone: str) -> list[tuple[str, str, str]]:
    member_id = member(services, phone).id
    with services.sessions() as session:
        return [(e.channel, e.action, e.source) for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.member_id == member_id).order_by(ConsentEvent.id))]


def command(services, sms, phone: str, body: str) -> str:
    """Send `body` from `phone`, run the worker, return the one answer the member got by SMS."""
    sms.sent.clear()
    event_id = record_sms(services, phone, body)
    run_worker(services)
    answers = [m.body for m in sms.sent if m.to == phone]
    assert len(answers) == 1, answers
    assert event(services, event_id).outcome.startswith("command:")
    return answers[0]


def notice(services, *, severity="routine", case="C1", kind="guideline", title="Guidance") -> set[str]:
    """Send a notice to list tft; return the phones it reached by SMS."""
    with transaction(services.sessions) as session:
        notice_id = create_notice(session, kind=kind, title=title, body="text", lists=["tft"], case_code=case,
                                  severity=severity, channels="sms").id
    return sent_to(services, lambda: send_notice(services, notice_id))


def sent_to(services, action) -> set[str]:
    sms = services.senders["sms"]
    sms.sent.clear()
    action()
    run_worker(services)
    return {m.to for m in sms.sent}


def reply(services, phone: str, text: str) -> set[str]:
    """A member's post; the phones (other than the author) it was relayed to by SMS."""
    return sent_to(services, lambda: record_sms(services, phone, text)) - {phone}


@pytest.fixture
def two_cases(network):
    with transaction(network.sessions) as session:
        assert create_case(session, "Second case").code == "C2"
    new_case_notice(network, "C1", ["tft"])
    new_case_notice(network, "C2", ["tft"])
    run_worker(network)
    return network


def test_mute_keeps_one_cases_posts_and_notices_away_while_other_cases_arrive(two_cases, sms):
    answer = command(two_cases, sms, ALICE, "MUTE C1")
    assert "C1 muted" in answer and "UNMUTE C1" in answer
    assert log(two_cases, ALICE) == [("sms", "mute:C1", "sms:MUTE C1")]
    assert ALICE not in reply(two_cases, LEE, "C1 relayed to everyone but Alice")
    assert ALICE in reply(two_cases, LEE, "C2 this one reaches Alice")
    assert ALICE not in notice(two_cases, case="C1", severity="urgent")  # muted means never, even urgent
    assert ALICE in notice(two_cases, case="C2")
    # Muting again changes nothing and logs nothing, but still answers.
    command(two_cases, sms, ALICE, "mute c1")
    assert len(log(two_cases, ALICE)) == 1


def test_unmute_brings_the_case_back(two_cases, sms):
    command(two_cases, sms, ALICE, "MUTE C1")
    assert "C1 unmuted" in command(two_cases, sms, ALICE, "UNMUTE C1")
    assert ALICE in reply(two_cases, LEE, "C1 back again")
    assert [a for _, a, _ in log(two_cases, ALICE)] == ["mute:C1", "unmute:C1"]
    with two_cases.sessions() as session:
        assert session.scalars(select(CaseMute)).all() == []


def test_mute_of_an_unknown_case_says_so_and_changes_nothing(two_cases, sms):
    assert "C99" in command(two_cases, sms, ALICE, "MUTE C99")
    assert log(two_cases, ALICE) == []


@pytest.mark.parametrize("length,hours", [("24H", 24), ("7D", 168)])
def test_pause_holds_routine_until_it_ends_and_lets_urgent_through(network, sms, length, hours):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    start = utcnow()
    with time_machine.travel(start, tick=False):
        answer = command(network, sms, ALICE, f"PAUSE {length}")
        assert "paused until" in answer and "Europe/Paris" in answer
        assert log(network, ALICE) == [("sms", f"pause:{length.lower()}", f"sms:PAUSE {length}")]
        assert ALICE not in reply(network, LEE, "C1 routine discussion")
        assert ALICE not in notice(network)
        assert ALICE in notice(network, severity="urgent")
    with time_machine.travel(start + timedelta(hours=hours, minutes=1), tick=False):
        assert ALICE in reply(network, LEE, "C1 after the pause")


def test_urgent_only_gets_urgent_notices_only(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    assert "urgent notices only" in command(network, sms, BEN, "URGENT ONLY")
    assert log(network, BEN) == [("sms", "urgent_only", "sms:URGENT ONLY")]
    assert BEN not in reply(network, LEE, "C1 routine")
    assert BEN not in notice(network)
    assert BEN in notice(network, severity="urgent")


def test_digest_replaces_each_message_with_the_digest(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    assert "digest" in command(network, sms, PARK, "DIGEST")
    assert log(network, PARK) == [("sms", "digest", "sms:DIGEST")]
    assert PARK not in reply(network, LEE, "C1 routine")
    assert PARK not in notice(network)
    assert PARK in notice(network, severity="urgent")
    with network.sessions() as session:
        sub = session.scalar(select(DigestSubscription))
    assert (sub.channel, sub.address, sub.status, sub.timezone, sub.hour) == ("sms", PARK, "active", "Asia/Seoul", 7)


def test_start_resumes_everything_and_is_logged(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    command(network, sms, BEN, "URGENT ONLY")
    assert BEN not in reply(network, LEE, "C1 routine")
    assert "receive case texts again" in command(network, sms, BEN, "START")
    assert [a for _, a, _ in log(network, BEN)] == ["urgent_only", "resume"]
    assert BEN in reply(network, LEE, "C1 routine again")
    with network.sessions() as session:
        pref = session.scalar(select(ChannelPreference).where(ChannelPreference.member_id == member(network, BEN).id))
    assert (pref.mode, pref.paused_until) == ("all", None)


def test_stop_stays_absolute_whatever_the_ladder_says(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    command(network, sms, ALICE, "URGENT ONLY")
    sms.sent.clear()
    record_sms(network, ALICE, "STOP")
    run_worker(network)
    assert sms.sent == []  # no confirmation to someone who opted out
    assert ALICE not in notice(network, severity="urgent")
    assert ALICE not in reply(network, LEE, "C1 routine")


def test_a_ladder_command_is_never_posted(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    assert reply(network, ALICE, "DIGEST") == set()
    from relay.model.tables import Post

    with network.sessions() as session:
        assert [p.body for p in session.scalars(select(Post).where(Post.kind == "reply"))] == []


def test_digest_for_one_list_by_sms(network, sms):
    """Ben is on tft and us: DIGEST tft keeps tft's routine notices for the digest, us's still come."""
    def to_ben(lists):
        with transaction(network.sessions) as session:
            notice_id = create_notice(session, kind="announcement", title="x", body="y", lists=lists,
                                      channels="sms").id
        return BEN in sent_to(network, lambda: send_notice(network, notice_id))

    assert "you are not on a list called nope" in command(network, sms, BEN, "DIGEST nope")
    assert "notices to tft" in command(network, sms, BEN, "digest TFT")
    assert log(network, BEN) == [("sms", "digest:tft", "sms:DIGEST TFT")]
    assert not to_ben(["tft"]) and to_ben(["us"])
    new_case_notice(network, "C1", ["tft"])  # relays follow the case, not the list: Ben still gets them
    run_worker(network)
    assert BEN in reply(network, KIM, "C1 a relay")


def test_a_set_wise_plan_leaves_out_or_delays_exactly_the_members_a_ladder_touches(network, tmp_path):
    """Planning (not only sending) applies the ladder, and its shortcut (shape_planned reads only members
    with a preference, a mute, a per-list digest or a zone in quiet hours) misses none of them."""
    from datetime import datetime, timezone

    from relay.members import ladder
    from relay.model.tables import Case, Delivery, Member

    with transaction(network.sessions) as session:
        members = {m.phone: m for m in session.scalars(select(Member))}
        case_id = session.scalar(select(Case.id).where(Case.number == 1))
        ladder.mute(session, members["+821012345601"], "sms", case_id, "C1", "test")
        ladder.pause(session, members["+821012345602"], "sms", timedelta(days=1), "test")
        ladder.set_mode(session, members["+821012345603"], "sms", "digest", "test")
    network.sessions.kw["info"] = {"quiet_hours": "22:00-07:00"}
    # 04:00 UTC: 23:00 in New York (Ben: quiet), 13:00 in Seoul, 05:00 in Paris (Alice: quiet)
    with time_machine.travel(datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc), tick=False):
        new_case_notice(network, "C1", ["tft"])
    with network.sessions() as session:
        planned = {(phone, d.channel): d.next_attempt_at for d, phone in session.execute(
            select(Delivery, Member.phone).join(Member, Member.id == Delivery.member_id)
            .where(Delivery.purpose == "notice"))}
    sms_to = {phone for phone, channel in planned if channel == "sms"}
    assert sms_to == {"+33612345604", "+12025550105"}  # muted, paused and digest-only left out
    assert planned[("+33612345604", "sms")] == datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)  # 07:00 Paris
    assert planned[("+12025550105", "sms")] == datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)  # 07:00 NY
    assert planned[("+821012345601", "email")] is None  # a mute is per channel; Seoul is awake
