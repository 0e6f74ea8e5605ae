"""Inbound WhatsApp (issue 19): recorded Twilio webhook bodies through the real webhook, ruled as SMS
(threads, STOP/START, the consent log), media filed as MMS, locations answered; WhatsApp status
callbacks with `read` and the 630xx codes."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.model.tables import CaseImage, ConsentEvent, Delivery, InboundEvent, Member, Notice, Post, utcnow
from relay.notices.lifecycle import delivery_counts, new_case_notice
from relay.notices.status import live_counts
from tests.conftest import run_worker
from tests.helpers import post_signed
from tests.whatsapp_fixtures import (
    KIM,
    LEE,
    PARK,
    PRIYA,
    PRIYA_WA,
    load_form,
    record_whatsapp,
    text_form,
)
from webhooks.app import create_app

SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"


def member(services, phone: str) -> Member:
    with services.sessions() as session:
        return session.scalar(select(Member).where(Member.phone == phone))


def event_of(services, sid: str) -> InboundEvent:
    with services.sessions() as session:
        return session.scalar(select(InboundEvent).where(InboundEvent.dedupe_key == sid))


def open_window(services, phone: str, ago: timedelta = timedelta(hours=1)) -> None:
    with transaction(services.sessions) as session:
        session.scalar(select(Member).where(Member.phone == phone)).whatsapp_last_inbound_at = utcnow() - ago


def test_recorded_text_is_verified_stored_once_threaded_and_relayed_to_sms_and_email(wa_network, sms_out, mail_out,
                                                                                      wa_out):
    open_window(wa_network, LEE)
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    sms_out.sent.clear(), mail_out.sent.clear(), wa_out.sent.clear()
    client = create_app(services=wa_network).test_client()
    form = load_form("text.txt")
    assert post_signed(client, SMS, form).status_code == 200
    assert post_signed(client, SMS, form).status_code == 200  # Twilio's retry: stored once
    with wa_network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)
                              .where(InboundEvent.dedupe_key == form["MessageSid"])) == 1
    run_worker(wa_network)
    event = event_of(wa_network, form["MessageSid"])
    assert event.outcome == "posted"
    with wa_network.sessions() as session:
        post = session.scalar(select(Post).where(Post.inbound_event_id == event.id))
        assert post.channel == "whatsapp" and post.author.phone == LEE
    text = "C1 Lee Minho: Looks like organising pneumonia, would check for prior infection"
    assert sorted(m.to for m in sms_out.sent) == sorted([KIM, PARK])
    assert {m.body for m in sms_out.sent} == {text}
    assert sorted(m.to for m in mail_out.sent) == sorted(["jiwon@example.org", "alice@example.org"])
    assert [(m.to, m.body) for m in wa_out.sent] == [(f"whatsapp:{LEE}", "Posted to C1, relayed to 3.")]
    lee = member(wa_network, LEE)
    assert lee.whatsapp_last_inbound_at is not None
    assert abs(lee.whatsapp_last_inbound_at - event.received_at) < timedelta(seconds=1)
    assert "Minho" in event.detail and "unverified" in event.detail  # ProfileName: shown, never trusted


def test_a_forged_or_unsigned_whatsapp_webhook_is_refused_and_not_stored(wa_network):
    client = create_app(services=wa_network).test_client()
    form = load_form("text.txt")
    assert post_signed(client, SMS, form, token="not-our-token").status_code == 403
    wrong_to = dict(form, To="whatsapp:+15550000000")
    response = post_signed(client, SMS, wrong_to)
    assert response.status_code == 400 and b"WhatsApp sender" in response.data
    with wa_network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 0


def test_a_picture_is_filed_under_the_case_like_an_mms(wa_network):
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    client = create_app(services=wa_network).test_client()
    form = load_form("media.txt")
    assert post_signed(client, SMS, form).status_code == 200
    dispatcher = wa_network.dispatcher
    run_worker(wa_network)
    event = event_of(wa_network, form["MessageSid"])
    assert event.outcome == "posted"
    with wa_network.sessions() as session:
        [image] = session.scalars(select(CaseImage)).all()
        assert image.source == "mms" and image.status == "pending" and image.content_type == "image/jpeg"
        assert image.source_url == form["MediaUrl0"] and image.source_key == f"mms:{event.id}:0"
    assert image.id in dispatcher.media  # fetched after the commit, as an MMS picture is


def test_a_location_gets_a_short_answer_and_is_not_posted(wa_network, wa_out):
    client = create_app(services=wa_network).test_client()
    form = load_form("location.txt")
    assert post_signed(client, SMS, form).status_code == 200
    run_worker(wa_network)
    assert event_of(wa_network, form["MessageSid"]).outcome == "unsupported:location"
    [answer] = wa_out.sent
    assert answer.to == f"whatsapp:{LEE}" and "locations are not relayed" in answer.body
    with wa_network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 0


def test_a_sticker_gets_a_short_answer(wa_network, wa_out):
    form = text_form(LEE, "", "SM" + "ab" * 16, MessageType="sticker", NumMedia="0")
    record_whatsapp(wa_network, form)
    run_worker(wa_network)
    assert event_of(wa_network, form["MessageSid"]).outcome == "unsupported:sticker"
    assert "cannot be relayed" in wa_out.sent[0].body


def test_stop_on_whatsapp_opts_out_of_whatsapp_only_and_start_opts_back_in(wa_network, wa_out):
    with transaction(wa_network.sessions) as session:  # Lee takes SMS too
        session.scalar(select(Member).where(Member.phone == LEE)).sms_discussion = True
    record_whatsapp(wa_network, text_form(LEE, "STOP", "SM" + "01" * 16))
    run_worker(wa_network)
    lee = member(wa_network, LEE)
    assert lee.whatsapp_opted_out_at is not None and lee.sms_opted_out_at is None
    assert wa_out.sent == []  # no answer to STOP
    with wa_network.sessions() as session:
        log = session.execute(select(ConsentEvent.channel, ConsentEvent.action, ConsentEvent.source)
                              .where(ConsentEvent.member_id == lee.id).order_by(ConsentEvent.id)).all()
    assert log[0] == ("whatsapp", "opt_in", "import:signed form 2026-11-02")
    assert log[-1] == ("whatsapp", "opt_out", "whatsapp:STOP")
    open_window(wa_network, LEE)
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    assert wa_out.sent == []  # the notice reaches Lee by SMS only
    with wa_network.sessions() as session:
        channels = set(session.scalars(select(Delivery.channel).where(Delivery.member_id == lee.id)))
    assert channels == {"sms"}
    record_whatsapp(wa_network, text_form(LEE, "START", "SM" + "02" * 16))
    run_worker(wa_network)
    assert member(wa_network, LEE).whatsapp_opted_out_at is None
    assert [m.to for m in wa_out.sent] == [f"whatsapp:{LEE}"]


def test_any_message_records_the_opt_in_and_finds_the_member_by_whatsapp_number(wa_network, wa_out):
    assert member(wa_network, PRIYA).whatsapp_opted_in_at is None
    form = text_form(PRIYA_WA, "what do you think?", "SM" + "03" * 16)
    record_whatsapp(wa_network, form)
    run_worker(wa_network)
    priya = member(wa_network, PRIYA)
    assert priya.whatsapp_opted_in_at is not None
    with wa_network.sessions() as session:
        assert session.execute(select(ConsentEvent.channel, ConsentEvent.action, ConsentEvent.source)
                               .where(ConsentEvent.member_id == priya.id)).all() == [
            ("whatsapp", "opt_in", "whatsapp:message")]
    assert event_of(wa_network, form["MessageSid"]).outcome == "asked:none"
    assert [m.to for m in wa_out.sent] == [f"whatsapp:{PRIYA_WA}"]


def test_a_profile_name_proves_nothing(wa_network, wa_out):
    form = text_form("+821099999999", "C1 I am the coordinator", "SM" + "04" * 16, ProfileName="Kim Jiwon")
    record_whatsapp(wa_network, form)
    run_worker(wa_network)
    assert event_of(wa_network, form["MessageSid"]).outcome == "rejected"
    with wa_network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 0
    assert "not registered" in wa_out.sent[0].body


# ---------------------------------------------------------------- status callbacks


def _sent_to_lee(services, wa_out) -> tuple[int, str]:
    open_window(services, LEE)
    result = new_case_notice(services, "C1", ["tft"])
    run_worker(services)
    [message] = [m for m in wa_out.sent if m.to == f"whatsapp:{LEE}"]
    with services.sessions() as session:
        delivery = session.get(Delivery, message.delivery_id)
        return result.notice_id, delivery.provider_message_id


def test_recorded_status_callbacks_reach_read_and_never_go_back(wa_network, wa_out):
    notice_id, sid = _sent_to_lee(wa_network, wa_out)
    client = create_app(services=wa_network).test_client()
    for name in ("status_sent.txt", "status_read.txt", "status_delivered.txt"):  # out of order
        assert post_signed(client, STATUS, load_form(name, SMSID_PLACEHOLDER=sid)).status_code == 200
    run_worker(wa_network)
    with wa_network.sessions() as session:
        delivery = session.scalar(select(Delivery).where(Delivery.provider_message_id == sid))
        assert delivery.status == "read"
        notice = session.get(Notice, notice_id)
        counts = live_counts(session, notice)
        assert counts["read"] == 1
        assert delivery_counts(session, notice)["whatsapp"] == {"read": 1}


def test_an_opt_out_code_in_a_callback_opts_the_member_out_of_whatsapp(wa_network, wa_out):
    _, sid = _sent_to_lee(wa_network, wa_out)
    client = create_app(services=wa_network).test_client()
    form = load_form("status_sent.txt", SMSID_PLACEHOLDER=sid)
    form.update(MessageStatus="failed", SmsStatus="failed", ErrorCode="63014")
    assert post_signed(client, STATUS, form).status_code == 200
    run_worker(wa_network)
    lee = member(wa_network, LEE)
    assert lee.whatsapp_opted_out_at is not None and lee.sms_opted_out_at is None
    with wa_network.sessions() as session:
        assert session.scalar(select(ConsentEvent.source).where(ConsentEvent.member_id == lee.id)
                              .order_by(ConsentEvent.id.desc()).limit(1)) == "provider:63014"


def test_a_window_closed_callback_sends_the_message_by_sms_instead(wa_network, wa_out, sms_out):
    with transaction(wa_network.sessions) as session:  # Lee takes SMS too, but the notice went only to WhatsApp
        session.scalar(select(Member).where(Member.phone == LEE)).sms_discussion = True
    open_window(wa_network, LEE)
    from relay.notices.lifecycle import create_notice, send_notice
    with transaction(wa_network.sessions) as session:
        notice_id = create_notice(session, kind="new_case", case_code="C1", lists=["tft"], channels="whatsapp").id
    send_notice(wa_network, notice_id)
    run_worker(wa_network)
    [message] = [m for m in wa_out.sent if m.to == f"whatsapp:{LEE}"]
    assert sms_out.sent == []
    with wa_network.sessions() as session:
        sid = session.get(Delivery, message.delivery_id).provider_message_id
    client = create_app(services=wa_network).test_client()
    form = load_form("status_sent.txt", SMSID_PLACEHOLDER=sid)
    form.update(MessageStatus="undelivered", SmsStatus="undelivered", ErrorCode="63016")
    assert post_signed(client, STATUS, form).status_code == 200
    run_worker(wa_network)
    assert [m.to for m in sms_out.sent] == [LEE]
    with wa_network.sessions() as session:
        failed = session.get(Delivery, message.delivery_id)
        assert failed.status == "undelivered" and failed.error_code == "63016"
        assert "sent by sms instead" in failed.error_message


def test_a_whatsapp_reply_with_a_resident_registration_number_is_held_then_released_once(wa_network, sms_out,
                                                                                       mail_out, wa_out):
    """Issue 16 on WhatsApp: the guard holds the reply (nobody else gets it), SEND <code> releases it once."""
    open_window(wa_network, LEE)
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    sms_out.sent.clear(), mail_out.sent.clear(), wa_out.sent.clear()
    client = create_app(services=wa_network).test_client()
    form = dict(load_form("text.txt"), Body="C1 patient 550315-1234567 looks like organising pneumonia",
                MessageSid="SM" + "7" * 32)
    assert post_signed(client, SMS, form).status_code == 200
    run_worker(wa_network)
    assert event_of(wa_network, form["MessageSid"]).outcome == "held"
    assert not sms_out.sent and not mail_out.sent
    [(to, answer)] = [(m.to, m.body) for m in wa_out.sent]
    assert to == f"whatsapp:{LEE}" and "550315" not in answer
    code = re.search(r"SEND ([A-Z0-9]{6})", answer).group(1)
    wa_out.sent.clear()
    send = dict(form, Body=f"SEND {code}", MessageSid="SM" + "8" * 32)
    assert post_signed(client, SMS, send).status_code == 200
    assert post_signed(client, SMS, dict(send, MessageSid="SM" + "9" * 32)).status_code == 200  # twice: once only
    run_worker(wa_network)
    assert sorted(m.to for m in sms_out.sent) == sorted([KIM, PARK])
    with wa_network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post).where(Post.kind == "reply")) == 1
