"""issue 17: coordinator commands by SMS (NOTICE/URGENT -> preview + code -> SEND/CANCEL, STATUS, HOLD ALL),
and acknowledgements by SMS (ACK 12, OK 12, ACK, 1), on SQLite and PostgreSQL, through the rule table."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select, update

from relay.infra.db import transaction
from relay.model.tables import AuditEvent, Member, Notice, utcnow
from relay.model.urgent import Acknowledgement, ConfirmationCode
from relay.outbound import hold
from tests.conftest import run_worker
from tests.helpers import event, member, reads_english, record_sms

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


def _texts_to(sms, phone):
    return [m.body for m in sms.sent if m.to == phone]


def _code(text: str) -> str:
    return re.search(r"SEND ([A-Z2-9]{6})", text).group(1)


def _notices(services):
    with services.sessions() as session:
        return list(session.scalars(select(Notice).order_by(Notice.id)))


def _draft(network, sms, body="URGENT tft ACK 10m: Isolation guideline changed, see library"):
    reads_english(network, KIM)  # these tests read her texts in English
    record_sms(network, KIM, body)
    run_worker(network)
    preview = _texts_to(sms, KIM)[-1]
    sms.sent.clear()
    return preview, _code(preview)


def test_urgent_command_makes_a_draft_and_answers_with_its_preview_and_a_code(network, sms):
    preview, code = _draft(network, sms)
    [notice] = _notices(network)
    assert (notice.status, notice.severity, notice.lists, notice.ack_within_s) == ("draft", "urgent", "tft", 600)
    assert notice.created_by == member(network, KIM).id
    assert f"notice {notice.id} to tft" in preview and "5 SMS" in preview and "GSM-7" in preview
    assert "est. $" in preview and "ACK asked within 10m" in preview and f"CANCEL {code}" in preview
    assert sms.sent == []  # nothing goes out before SEND
    with network.sessions() as session:
        row = session.scalar(select(ConfirmationCode))
        assert row.code_hash != code and len(row.code_hash) == 64  # only the hash is kept
        assert row.address == KIM and row.notice_id == notice.id
        assert row.expires_at - row.created_at == timedelta(minutes=15)
        audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "command.draft"))
        assert audited.detail["address"] == KIM and audited.source == "sms"


def test_send_with_the_code_sends_the_notice_once_with_the_ack_instruction(network, sms):
    _, code = _draft(network, sms)
    record_sms(network, KIM, f"send {code.lower()}")
    run_worker(network)
    [notice] = _notices(network)
    assert notice.status == "sent"
    assert any("is being sent" in t for t in _texts_to(sms, KIM))
    to_lee = [t for t in _texts_to(sms, LEE)]
    assert len(to_lee) == 1 and to_lee[0].startswith("URGENT") and to_lee[0].endswith(f"Reply ACK {notice.id} to confirm.")
    sms.sent.clear()
    record_sms(network, KIM, f"SEND {code}")  # the same code again
    run_worker(network)
    assert [t for t in _texts_to(sms, KIM) if "already used" in t]
    assert not _texts_to(sms, LEE)


def test_cancel_drops_the_draft(network, sms):
    _, code = _draft(network, sms)
    record_sms(network, KIM, f"CANCEL {code}")
    run_worker(network)
    assert _notices(network)[0].status == "cancelled"
    assert not _texts_to(sms, LEE)


def test_a_korean_coordinator_reads_the_cancellation_in_korean(network, sms):
    record_sms(network, KIM, "NOTICE tft: ward meeting at 3")  # Kim's own language is Korean
    run_worker(network)
    code = _code(_texts_to(sms, KIM)[-1])
    record_sms(network, KIM, f"CANCEL {code}")
    run_worker(network)
    notice = _notices(network)[0]
    assert notice.status == "cancelled"
    assert f"취소했습니다(공지 {notice.id})" in _texts_to(sms, KIM)[-1], _texts_to(sms, KIM)[-1]


def test_non_coordinator_is_told_who_may_send_notices_and_how_to_post_and_nothing_is_created(network, sms):
    """A member's NOTICE/URGENT that threads into no case is not a bare refusal: the answer says only
    coordinators send notices, and how to post to a case. Nothing is created, nobody else is texted."""
    event_id = record_sms(network, LEE, "NOTICE tft: everyone come to the ward")
    run_worker(network)
    assert event(network, event_id).outcome.startswith("asked")
    assert _notices(network) == []
    [answer] = _texts_to(sms, LEE)
    assert "only coordinators" in answer and "C123 your text" in answer and "not allow" not in answer
    assert {m.to for m in sms.sent} == {LEE}
    with network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConfirmationCode)) == 0


def test_a_members_urgent_that_names_a_case_is_an_ordinary_post_never_a_notice(network, sms):
    """It threads like any text (here: into C1, the case Lee was last sent) and is posted there."""
    from relay.model.tables import Post
    from relay.notices.lifecycle import new_case_notice

    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    before = len(_notices(network))
    event_id = record_sms(network, LEE, "URGENT case: 45M with hemoptysis, see C3")
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert len(_notices(network)) == before  # a member can never broadcast: no notice, no code, no urgent severity
    with network.sessions() as session:
        post = session.scalar(select(Post).order_by(Post.id.desc()))
        assert post.kind != "notice" and "hemoptysis" in post.body
        assert session.scalar(select(func.count()).select_from(ConfirmationCode)) == 0
    assert "C1" in _texts_to(sms, LEE)[-1]  # the usual confirmation


def test_a_members_other_coordinator_words_are_still_not_authorised(network, sms):
    record_sms(network, LEE, "STAND DOWN 1")
    record_sms(network, LEE, "HOLD ALL")
    run_worker(network)
    assert all("not allow" in t for t in _texts_to(sms, LEE)) and _texts_to(sms, LEE)


def test_stand_down_stops_a_sent_notice_and_its_escalation(network, sms):
    from relay.model.tables import Delivery
    from relay.notices.escalation import escalate

    notice_id = _sent_urgent(network, sms)
    record_sms(network, LEE, f"ACK {notice_id}")
    run_worker(network)
    with network.sessions() as session:
        sent_at = session.get(Notice, notice_id).sent_at
    escalate(network, sent_at + timedelta(minutes=26))  # calls to the four still silent planned (steps of 15m)
    sms.sent.clear()
    event_id = record_sms(network, KIM, f"stand down {notice_id}")
    run_worker(network)
    [answer] = _texts_to(sms, KIM)
    assert f"notice {notice_id}" in answer and "stopped" in answer and "4 waiting" in answer, answer
    assert event(network, event_id).outcome.startswith("command:stand_down")
    assert _notices(network)[-1].status == "stopped"
    with network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "queued")) == 0
        audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "notice.stop"))
        assert audited.source == "sms" and audited.actor_member_id == member(network, KIM).id
    escalate(network, sent_at + timedelta(minutes=60))
    run_worker(network)
    assert sms.sent == [m for m in sms.sent if m.to == KIM]  # nobody called, reported or texted again
    record_sms(network, KIM, f"STAND DOWN {notice_id}")  # a second time: said so, nothing else
    run_worker(network)
    assert "already stopped" in _texts_to(sms, KIM)[-1]


def test_stop_followed_by_a_notice_id_stays_the_opt_out_word_it_is_not(network, sms):
    """STOP is the carrier's opt-out word: "STOP 12" is no notice command (and not an opt-out either)."""
    notice_id = _sent_urgent(network, sms)
    record_sms(network, KIM, f"STOP {notice_id}")
    run_worker(network)
    assert _notices(network)[-1].status == "sent"
    record_sms(network, KIM, "STOP")
    run_worker(network)
    assert member(network, KIM).sms_opted_out_at is not None
    assert _notices(network)[-1].status == "sent"


def test_a_korean_coordinator_reads_the_stop_in_korean(network, sms):
    notice_id = _sent_urgent(network, sms)
    with transaction(network.sessions) as session:
        session.execute(update(Member).where(Member.phone == KIM).values(language="ko"))
    record_sms(network, KIM, f"STAND DOWN {notice_id}")
    run_worker(network)
    assert f"공지 {notice_id}" in _texts_to(sms, KIM)[-1] and "중단" in _texts_to(sms, KIM)[-1]


def test_a_code_from_another_phone_is_refused_and_stays_usable_by_its_owner(network, sms):
    _, code = _draft(network, sms)
    with transaction(network.sessions) as session:  # Lee is made a coordinator too: the number still must match
        member_row = session.merge(member(network, LEE))
        member_row.roles = "coordinator;member"
    record_sms(network, LEE, f"SEND {code}")
    run_worker(network)
    assert _notices(network)[0].status == "draft"
    assert "not valid for this number" in _texts_to(sms, LEE)[-1]
    with network.sessions() as session:
        refused = session.scalar(select(AuditEvent).where(AuditEvent.action == "command.code_refused"))
        assert refused.detail == {"address": LEE, "command": "send", "reason": "other_sender"}
    record_sms(network, KIM, f"SEND {code}")
    run_worker(network)
    assert _notices(network)[0].status == "sent"


def test_an_expired_code_is_refused_and_its_draft_dropped(network, sms):
    _, code = _draft(network, sms)
    with transaction(network.sessions) as session:
        session.execute(update(ConfirmationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    record_sms(network, KIM, f"SEND {code}")
    run_worker(network)
    assert "has expired" in _texts_to(sms, KIM)[-1]
    assert _notices(network)[0].status == "cancelled"
    assert not _texts_to(sms, LEE)


def test_unknown_list_creates_nothing(network, sms):
    record_sms(network, KIM, "NOTICE nosuch: hello")
    run_worker(network)
    # issue 21: the refusal in Kim's own language (Korean), not the core's English
    assert "이름이 nosuch인 목록이 없습니다. 아무것도 만들지 않았습니다." in _texts_to(sms, KIM)[-1]
    assert _notices(network) == []


def test_a_refused_command_is_explained_in_the_coordinators_language(network, sms):
    """Issue 21: what the core says in English reaches a Korean coordinator's SMS in Korean."""
    record_sms(network, KIM, "STATUS 999")
    run_worker(network)
    answer = _texts_to(sms, KIM)[-1]
    assert "공지 999이(가) 없습니다." in answer and "no notice" not in answer, answer


def _sent_urgent(network, sms):
    _, code = _draft(network, sms)
    record_sms(network, KIM, f"SEND {code}")
    run_worker(network)
    sms.sent.clear()
    return _notices(network)[-1].id


def _acks(services):
    with services.sessions() as session:
        return {(a.member_id, a.channel) for a in session.scalars(select(Acknowledgement))}


def test_ack_forms_record_one_acknowledgement_each_with_one_confirmation(network, sms):
    notice_id = _sent_urgent(network, sms)
    record_sms(network, LEE, f"ACK {notice_id}")
    record_sms(network, PARK, f"ok {notice_id}.")
    record_sms(network, ALICE, "ack")
    record_sms(network, BEN, "1")
    run_worker(network)
    ids = {member(network, p).id for p in (LEE, PARK, ALICE, BEN)}
    assert _acks(network) == {(i, "sms") for i in ids}
    for phone in (LEE, PARK, ALICE, BEN):
        assert _texts_to(sms, phone) == [f"relay: thank you, notice {notice_id} is acknowledged."]
    sms.sent.clear()
    event_id = record_sms(network, LEE, f"ACK {notice_id}")  # again: stored once, no second confirmation
    run_worker(network)
    assert event(network, event_id).outcome == "command:ack"
    assert _texts_to(sms, LEE) == [] and len(_acks(network)) == 4
    assert not [m for m in sms.sent if m.to != LEE]  # never relayed to anyone


def test_ack_of_a_notice_not_sent_to_the_member_is_refused(network, sms):
    notice_id = _sent_urgent(network, sms)
    record_sms(network, LEE, f"ACK {notice_id + 100}")
    run_worker(network)
    assert "no notice" in _texts_to(sms, LEE)[0]
    assert _acks(network) == set()


def test_a_lone_1_is_an_ordinary_message_without_exactly_one_open_request(network, sms):
    event_id = record_sms(network, LEE, "1")
    run_worker(network)
    assert not event(network, event_id).outcome.startswith("command")


def test_status_counts_deliveries_and_acknowledgements(network, sms):
    notice_id = _sent_urgent(network, sms)
    record_sms(network, LEE, f"ACK {notice_id}")
    record_sms(network, KIM, f"STATUS {notice_id}")
    run_worker(network)
    status = _texts_to(sms, KIM)[-1]
    assert f"notice {notice_id} sent" in status and "ACK 1/5" in status


def test_hold_all_needs_its_code(network, sms):
    record_sms(network, KIM, "HOLD ALL")
    run_worker(network)
    reply = _texts_to(sms, KIM)[-1]
    with network.sessions() as session:
        assert not hold.is_on(session)
    record_sms(network, KIM, f"SEND {_code(reply)}")
    run_worker(network)
    with network.sessions() as session:
        assert hold.is_on(session)
    record_sms(network, KIM, "resume all")
    run_worker(network)
    with network.sessions() as session:
        codes = session.scalars(select(ConfirmationCode).where(ConfirmationCode.action == "resume")).all()
    assert len(codes) == 1


def test_no_calls_and_calls_ok(network, sms):
    record_sms(network, LEE, "no calls")
    run_worker(network)
    assert member(network, LEE).calls_ok is False
    record_sms(network, LEE, "CALLS OK")
    run_worker(network)
    assert member(network, LEE).calls_ok is True
