"""Issue 16 by SMS: a reply with a patient identifier reaches nobody but its author, who gets one answer in
their language (kind and place, never the value) with a code; SEND <code> releases it exactly once, DROP
drops it, a corrected reply goes through, and the sweeper drops what nobody decided on."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select, update

from relay.discussion import holding
from relay.inbound.sms import process_inbound
from relay.infra.audit import recent
from relay.infra.db import transaction
from relay.model.tables import HeldMessage, MemberList, Post, utcnow
from relay.notices.lifecycle import new_case_notice
from relay.sweeper import sweep
from tests.conftest import run_worker
from tests.helpers import event, record_sms

KIM, LEE, PARK = "+821012345601", "+821012345602", "+821012345603"
RRN = "550315-1234567"


def _start(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()


def _code(body: str) -> str:
    return re.search(r"SEND ([A-Z0-9]{6})", body).group(1)


def _audit_actions(network) -> list[str]:
    with network.sessions() as session:
        return [a.action for a in recent(session, 20)]


def _posts(network) -> list[str]:
    with network.sessions() as session:
        return list(session.scalars(select(Post.body).where(Post.kind == "reply")))


def test_a_reply_with_a_registration_number_reaches_only_its_author(network, sms):
    _start(network, sms)
    event_id = record_sms(network, LEE, f"C1 pt RRN {RRN}, GGO both lower lobes")
    run_worker(network)
    assert [m.to for m in sms.sent] == [LEE]
    answer = sms.sent[0].body
    assert "NOT relayed" in answer and "resident registration number" in answer and "SEND " in answer
    assert "DROP " in answer and RRN not in answer and "550315" not in answer
    found = event(network, event_id)
    assert found.outcome == "held" and found.guard_verdict == "hold" and found.guard_kinds == ["resident_number"]
    assert RRN not in found.detail
    assert _posts(network) == []
    with network.sessions() as session:
        held = session.scalar(select(HeldMessage))
        assert held.body.endswith("GGO both lower lobes") and held.status == "held"  # stored, nothing lost


def test_the_answer_is_in_the_authors_language(network, sms):
    _start(network, sms)
    record_sms(network, KIM, "C1 환자 김철수 CT 소견 공유합니다")
    run_worker(network)
    [answer] = [m.body for m in sms.sent]
    assert "전달되지 않았습니다" in answer and "환자 이름" in answer and "김철수" not in answer


def test_send_releases_the_held_reply_exactly_once(network, sms):
    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}, not a patient, a test string")
    run_worker(network)
    code = _code(sms.sent[0].body)
    sms.sent.clear()
    first = record_sms(network, LEE, f"send {code}")
    second = record_sms(network, LEE, f"SEND {code}")
    run_worker(network)
    assert event(network, first).outcome == "guard:released"
    assert event(network, second).outcome == "guard:unknown_code"
    relayed = [m for m in sms.sent if m.to != LEE]
    assert sorted(m.to for m in relayed) == sorted([KIM, PARK, "+33612345604", "+12025550105"])
    assert len(_posts(network)) == 1
    assert any("relayed as written" in m.body for m in sms.sent if m.to == LEE)
    actions = _audit_actions(network)
    assert "guard.release" in actions and "guard.hold" in actions


def test_another_members_code_releases_nothing(network, sms):
    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}")
    run_worker(network)
    code = _code(sms.sent[0].body)
    sms.sent.clear()
    event_id = record_sms(network, PARK, f"SEND {code}")
    run_worker(network)
    assert event(network, event_id).outcome == "guard:unknown_code"
    assert [m.to for m in sms.sent] == [PARK] and _posts(network) == []


def test_drop_drops_it_and_empties_its_body(network, sms):
    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}")
    run_worker(network)
    code = _code(sms.sent[0].body)
    sms.sent.clear()
    event_id = record_sms(network, LEE, f"DROP {code}")
    run_worker(network)
    assert event(network, event_id).outcome == "guard:dropped"
    assert [m.to for m in sms.sent] == [LEE] and "dropped" in sms.sent[0].body
    with network.sessions() as session:
        held = session.scalar(select(HeldMessage))
        assert held.status == "dropped" and held.body == ""
    assert _posts(network) == []


def test_a_corrected_reply_goes_through_and_replaces_the_held_one(network, sms):
    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}, GGO")
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, LEE, "C1 GGO both lower lobes (identifier removed)")
    run_worker(network)
    assert event(network, event_id).outcome == "posted" and event(network, event_id).guard_verdict == "pass"
    assert _posts(network) == ["GGO both lower lobes (identifier removed)"]
    with network.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "dropped"


def test_an_expired_hold_is_dropped_by_the_sweeper_and_audited(network, sms):
    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}")
    run_worker(network)
    code = _code(sms.sent[0].body)
    sweep(network)
    with network.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "held"  # not yet due
    with transaction(network.sessions) as session:
        session.execute(update(HeldMessage).values(expires_at=utcnow() - timedelta(seconds=1)))
    sweep(network)
    with network.sessions() as session:
        held = session.scalar(select(HeldMessage))
        assert held.status == "expired" and held.body == ""
    assert "guard.expire" in _audit_actions(network)
    sms.sent.clear()
    record_sms(network, LEE, f"SEND {code}")
    run_worker(network)
    assert _posts(network) == [] and [m.to for m in sms.sent] == [LEE]


def test_warn_relays_and_tells_the_author(network, sms):
    network.settings = replace(network.settings, guard="warn")
    _start(network, sms)
    event_id = record_sms(network, LEE, "C1 call the family on 010-2345-6789")
    run_worker(network)
    assert event(network, event_id).outcome == "posted" and event(network, event_id).guard_verdict == "warn"
    mine = [m.body for m in sms.sent if m.to == LEE]
    assert len(mine) == 1 and "phone number" in mine[0] and "2345" not in mine[0]
    assert len([m for m in sms.sent if m.to != LEE]) == 4


def test_off_and_a_list_override(network, sms):
    _start(network, sms)
    with transaction(network.sessions) as session:
        session.execute(update(MemberList).where(MemberList.name == "tft").values(guard="off"))
    event_id = record_sms(network, LEE, f"C1 pt RRN {RRN}")
    run_worker(network)
    assert event(network, event_id).outcome == "posted" and event(network, event_id).guard_verdict == "off"


def test_processing_a_held_reply_twice_holds_it_once(network, sms):
    _start(network, sms)
    event_id = record_sms(network, LEE, f"C1 pt RRN {RRN}")
    process_inbound(network, event_id)
    assert process_inbound(network, event_id).outcome == "duplicate"
    with network.sessions() as session:
        assert len(session.scalars(select(HeldMessage)).all()) == 1


def test_the_sms_rule_reads_send_and_drop_only_as_whole_messages():
    from relay.rules.keywords import guard_command_of

    assert guard_command_of(" send k7p3qx. ") == ("guard_send", "K7P3QX")
    assert guard_command_of("DROP K7P3QX") == ("guard_drop", "K7P3QX")
    assert guard_command_of("send K7P3QX to the team please") is None
    assert holding.new_code() != holding.new_code()


def test_metrics_count_verdicts_kinds_and_holds(network, sms):
    from relay.infra.metrics import render_metrics

    _start(network, sms)
    record_sms(network, LEE, f"C1 pt RRN {RRN}")
    record_sms(network, PARK, "C1 agree")
    run_worker(network)
    text = render_metrics(network.sessions).decode()
    assert 'relay_guard_findings{kind="resident_number"} 1.0' in text
    assert 'relay_guard_messages{verdict="hold"} 1.0' in text
    assert 'relay_guard_messages{verdict="pass"} 1.0' in text
    assert 'relay_held_messages{status="held"} 1.0' in text


def test_through_the_signed_twilio_webhook_held_then_sent_once(network, sms):
    from tests.helpers import post_signed, sms_form
    from webhooks.app import create_app

    _start(network, sms)
    client = create_app(services=network).test_client()
    assert post_signed(client, "/webhooks/twilio/sms", sms_form(LEE, f"C1 pt RRN {RRN}")).status_code == 200
    run_worker(network)
    assert [m.to for m in sms.sent] == [LEE] and _posts(network) == []
    code = _code(sms.sent[0].body)
    sms.sent.clear()
    form = sms_form(LEE, f"SEND {code}")
    for _ in range(2):  # Twilio retries the same webhook: one release
        assert post_signed(client, "/webhooks/twilio/sms", form).status_code == 200
    run_worker(network)
    assert len(_posts(network)) == 1 and len([m for m in sms.sent if m.to != LEE]) == 4
