"""issue 17: the escalation ladder on SQLite and PostgreSQL: other channels after the ack window, then a
call through the Twilio stand-in (real HTTP) whose Gather callback is signed and verified, then the
author's report; each step at most once per member, stopping at an acknowledgement, STOP and NO CALLS."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.model.tables import Delivery, Member, Notice
from relay.model.urgent import Acknowledgement, EscalationStep
from relay.notices import acks
from relay.notices.escalation import escalate
from relay.notices.lifecycle import create_notice, send_notice
from relay.providers.twilio_voice import TwilioVoiceSender
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, run_worker
from tests.helpers import member, record_sms
from tests.standins.twilio_voice import gather_request
from webhooks.app import create_app

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


@pytest.fixture
def urgent(network, twilio_standin):
    """An urgent SMS-only notice from Kim to tft asking for ACK within 10 minutes, steps of 5 minutes, sent; the
    voice sender goes to the Twilio stand-in over real HTTP."""
    voice_settings = network.settings.replace(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                                              twilio_from=OUR_NUMBER, twilio_api_url=twilio_standin.url)
    network.senders["voice"] = TwilioVoiceSender(voice_settings, timeout=5)
    with transaction(network.sessions) as session:
        kim = session.scalar(select(Member).where(Member.phone == KIM))
        notice = create_notice(session, kind="announcement", title="Isolation guideline changed", lists=["tft"],
                               severity="urgent", channels="sms", created_by=kim.id,
                               ack_within=timedelta(minutes=10), escalation_step=timedelta(minutes=5))
        notice_id = notice.id
    send_notice(network, notice_id)
    run_worker(network)
    with network.sessions() as session:
        network.sent_at = session.get(Notice, notice_id).sent_at
    network.notice_id = notice_id
    return network


def _at(services, minutes: float):
    return services.sent_at + timedelta(minutes=minutes)


def _steps(services) -> set[tuple[int, str]]:
    with services.sessions() as session:
        return {(s.member_id, s.step) for s in session.scalars(select(EscalationStep))}


def _ids(services, *phones) -> set[int]:
    return {member(services, p).id for p in phones}


def test_nothing_happens_inside_the_window(urgent, mail):
    assert escalate(urgent, _at(urgent, 9.9)) == []
    assert _steps(urgent) == set()


def test_the_ladder_other_channels_then_a_call_then_the_report(urgent, sms, mail, twilio_standin):
    record_sms(urgent, LEE, f"ACK {urgent.notice_id}")
    run_worker(urgent)
    sms.sent.clear()

    escalate(urgent, _at(urgent, 10.1))  # step 1: the same notice by email, to the four still silent
    run_worker(urgent)
    assert sorted(m.to for m in mail.sent) == sorted(["jiwon@example.org", "seoyeon@example.org",
                                                      "alice@example.org", "ben@example.org"])
    assert _steps(urgent) == {(i, "channels") for i in _ids(urgent, KIM, PARK, ALICE, BEN)}
    assert sms.sent == []  # nobody texted twice
    assert escalate(urgent, _at(urgent, 10.2)) == []  # a second sweep does nothing more

    record_sms(urgent, BEN, "NO CALLS")
    run_worker(urgent)
    escalate(urgent, _at(urgent, 15.1))  # step 2: a call to the three silent who take calls
    run_worker(urgent)
    assert sorted(c.to for c in twilio_standin.calls) == sorted([KIM, PARK, ALICE])
    korean = next(c for c in twilio_standin.calls if c.to == KIM)
    assert ("ko-KR", "Isolation guideline changed") in korean.said and korean.gather.attrib["numDigits"] == "1"
    english = next(c for c in twilio_standin.calls if c.to == PARK)
    assert ("en-US", "Press 1 to acknowledge that you have received it.") in english.said
    assert (member(urgent, BEN).id, "call") in _steps(urgent)  # the step is taken, the call not placed

    client = create_app(services=urgent).test_client()
    url, form, headers = gather_request(english, "1", AUTH_TOKEN)
    path = url.split("relay.example.org", 1)[1]
    forged = client.post(path, data={**form, "Digits": "1"}, headers={"X-Twilio-Signature": "bad"})
    assert forged.status_code == 403
    answer = client.post(path, data=form, headers=headers)
    assert answer.status_code == 200 and "Thank you" in answer.get_data(as_text=True)
    with urgent.sessions() as session:
        assert session.scalar(select(Acknowledgement.channel).where(
            Acknowledgement.member_id == member(urgent, PARK).id)) == "voice"

    escalate(urgent, _at(urgent, 20.1))  # step 3: Kim, the author, gets the list of the silent
    run_worker(urgent)
    report = [m.body for m in sms.sent if m.to == KIM]
    assert len(report) == 1 and "응답 없는 회원 3명" in report[0]  # Kim, the author, reads Korean
    assert "Alice Moreau" in report[0] and "Ben Carter" in report[0] and "Park" not in report[0]
    escalate(urgent, _at(urgent, 40))
    run_worker(urgent)
    assert len(twilio_standin.calls) == 3 and len([m for m in sms.sent if m.to == KIM]) == 1


def test_a_call_still_queued_when_the_member_acknowledges_is_not_placed(urgent, twilio_standin):
    escalate(urgent, _at(urgent, 15.1))  # both steps at once (a sweep that came late)
    record_sms(urgent, ALICE, f"ACK {urgent.notice_id}")
    # the ACK is processed before the queued call: the worker takes inbound first
    run_worker(urgent)
    assert ALICE not in {c.to for c in twilio_standin.calls}
    with urgent.sessions() as session:
        call = session.scalar(select(Delivery).where(Delivery.purpose == "call",
                                                     Delivery.member_id == member(urgent, ALICE).id))
    assert (call.status, call.error_code) == ("failed", "acknowledged")


def test_stop_means_no_other_channel_and_no_call(urgent, mail, twilio_standin):
    record_sms(urgent, PARK, "STOP")
    run_worker(urgent)
    escalate(urgent, _at(urgent, 15.1))
    run_worker(urgent)
    assert PARK not in {c.to for c in twilio_standin.calls}
    assert "seoyeon@example.org" in {m.to for m in mail.sent}  # email is another channel she still takes


def test_expiry_stops_the_ladder(urgent, twilio_standin):
    with transaction(urgent.sessions) as session:
        session.get(Notice, urgent.notice_id).expires_at = _at(urgent, 12)
    escalate(urgent, _at(urgent, 10.1))
    escalate(urgent, _at(urgent, 15.1))
    run_worker(urgent)
    assert {step for _, step in _steps(urgent)} == {"channels"}
    assert twilio_standin.calls == []


def test_each_step_is_a_unique_row(urgent):
    escalate(urgent, _at(urgent, 10.1))
    lee = member(urgent, LEE).id
    with transaction(urgent.sessions) as session:
        session.add(EscalationStep(notice_id=urgent.notice_id, member_id=lee, step="channels"))
        with pytest.raises(Exception):  # the database refuses a second row for the same step
            session.flush()
        session.rollback()
    with urgent.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EscalationStep)) == 5


def test_the_table_shows_who_is_escalated(urgent):
    record_sms(urgent, LEE, f"ACK {urgent.notice_id}")
    run_worker(urgent)
    escalate(urgent, _at(urgent, 10.1))
    with urgent.sessions() as session:
        rows = acks.table(session, session.get(Notice, urgent.notice_id))
    counts = acks.counts(rows)
    assert (counts["acknowledged"], counts["escalated"], counts["escalated_by_step"]) == (1, 4, {"channels": 4})


def test_quiet_hours_do_not_delay_the_escalation_of_an_urgent_notice(urgent, mail):
    from relay.model.tables import ChannelPreference

    with transaction(urgent.sessions) as session:  # everyone's quiet hours cover the whole day
        for member_id in session.scalars(select(Member.id)):
            for channel in ("sms", "email"):
                session.add(ChannelPreference(member_id=member_id, channel=channel, quiet_start="00:00",
                                              quiet_end="23:59"))
    escalate(urgent, _at(urgent, 10.1))
    run_worker(urgent)
    assert len(mail.sent) == 5  # the other channel at once, not in the morning
    with urgent.sessions() as session:
        waiting = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "queued"))
    assert waiting == 0
