"""The core flow without servers: notice -> member reply by SMS -> relays and confirmation."""
from __future__ import annotations

from relay.notices import new_case_notice
from relay.processing import process_inbound

from .conftest import run_worker
from .helpers import deliveries, event, member, record_sms

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


def test_new_case_notice_reaches_every_list_member_once(network, sms):
    result = new_case_notice(network, "C1", ["tft", "us"])  # Ben is on both lists
    run_worker(network)
    assert result.recipients == 5
    assert sorted(m.to for m in sms.sent) == sorted([KIM, LEE, PARK, ALICE, BEN])
    english = next(m for m in sms.sent if m.to == LEE).body
    assert "C1" in english and "https://relay.example.org/library/cases/C1" in english
    assert 'Reply with "C1' in english
    korean = next(m for m in sms.sent if m.to == KIM).body
    assert "새 증례 C1" in korean


def test_reply_with_case_code_is_relayed_to_every_other_participant(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    record_sms(network, LEE, "C1 looks like organising pneumonia")
    run_worker(network)
    relayed = {m.to: m.body for m in sms.sent if m.to != LEE}
    assert sorted(relayed) == sorted([KIM, PARK, ALICE, BEN])
    assert set(relayed.values()) == {"C1 Lee Minho: looks like organising pneumonia"}
    confirmation = [m.body for m in sms.sent if m.to == LEE]
    assert confirmation == ["Posted to C1, relayed to 4."]


def test_bare_reply_goes_to_the_case_last_notified(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, PARK, "agree, typical pattern")
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert "C1 Park Seoyeon: agree, typical pattern" in {m.body for m in sms.sent}


def test_bare_reply_with_no_recent_case_asks_which_case(network, sms):
    event_id = record_sms(network, PARK, "what do you think?")
    run_worker(network)
    assert event(network, event_id).outcome == "asked:none"
    assert len(sms.sent) == 1 and sms.sent[0].to == PARK
    assert "which case" in sms.sent[0].body


def test_stop_opts_out_and_is_never_relayed(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, ALICE, "stop")
    run_worker(network)
    assert event(network, event_id).outcome == "command:stop"
    assert sms.sent == []  # no relay, and no reply to an opted-out number
    assert member(network, ALICE).sms_opted_out_at is not None
    record_sms(network, LEE, "C1 second opinion please")
    run_worker(network)
    assert ALICE not in {m.to for m in sms.sent}


def test_processing_the_same_event_twice_changes_nothing(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    event_id = record_sms(network, LEE, "C1 first")
    first = process_inbound(network, event_id)
    before = len(deliveries(network))
    second = process_inbound(network, event_id)
    assert first.outcome == "posted" and second.outcome == "duplicate"
    assert len(deliveries(network)) == before
