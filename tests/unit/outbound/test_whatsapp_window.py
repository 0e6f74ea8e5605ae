"""WhatsApp's 24-hour window at send time (issue 19): free-form inside, a Content API template outside
(frozen clock on both sides of the boundary), and no template, no opt-in or the channel off -> the
member's other channels, never silently lost, with the reason on the delivery."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import Delivery, Member
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from relay.services import build_services
from tests.conftest import run_worker
from tests.whatsapp_fixtures import LEE, PRIYA, TEMPLATES, record_whatsapp, text_form

WROTE = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # Lee's last WhatsApp message


def last_wrote(services, phone: str, when: datetime | None) -> None:
    with transaction(services.sessions) as session:
        session.scalar(select(Member).where(Member.phone == phone)).whatsapp_last_inbound_at = when


def delivery(services, delivery_id: int) -> Delivery:
    with services.sessions() as session:
        return session.get(Delivery, delivery_id)


def to_lee(wa_out):
    return [m for m in wa_out.sent if m.to == f"whatsapp:{LEE}"]


def test_one_second_inside_the_window_goes_free_form(wa_network, wa_out):
    last_wrote(wa_network, LEE, WROTE)
    with time_machine.travel(WROTE + timedelta(hours=24) - timedelta(seconds=1), tick=False):
        new_case_notice(wa_network, "C1", ["tft"])
        run_worker(wa_network)
    [message] = to_lee(wa_out)
    assert message.content_sid == "" and message.content_variables == ""
    assert "C1" in message.body and "https://relay.example.org/library/cases/C1" in message.body


def test_at_the_boundary_it_is_a_template_with_the_case_variables(wa_network, wa_out):
    last_wrote(wa_network, LEE, WROTE)
    with time_machine.travel(WROTE + timedelta(hours=24), tick=False):
        new_case_notice(wa_network, "C1", ["tft"])
        run_worker(wa_network)
    [message] = to_lee(wa_out)
    assert message.content_sid == TEMPLATES["new_case"]["en"]
    assert json.loads(message.content_variables) == {
        "1": "C1", "2": "Fever and ground-glass opacities", "3": "https://relay.example.org/library/cases/C1"}
    assert delivery(wa_network, message.delivery_id).status == "accepted"


def test_a_member_who_never_wrote_gets_the_template_in_their_language(wa_network, wa_out):
    with transaction(wa_network.sessions) as session:
        session.scalar(select(Member).where(Member.phone == LEE)).language = "ko"
    last_wrote(wa_network, LEE, None)
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    [message] = to_lee(wa_out)
    assert message.content_sid == TEMPLATES["new_case"]["ko"]


def test_no_template_outside_the_window_falls_back_to_sms_with_the_reason(wa_network, wa_out, sms_out):
    with transaction(wa_network.sessions) as session:  # Lee takes SMS as well, but this notice is WhatsApp-only
        session.scalar(select(Member).where(Member.phone == LEE)).sms_discussion = True
        notice_id = create_notice(session, kind="announcement", title="Journal club moved", body="Thursday 19:00",
                                  lists=["tft"], channels="whatsapp").id
    last_wrote(wa_network, LEE, WROTE)
    with time_machine.travel(WROTE + timedelta(hours=30), tick=False):
        send_notice(wa_network, notice_id)
        run_worker(wa_network)
    assert to_lee(wa_out) == []
    [sms] = [m for m in sms_out.sent if m.to == LEE]
    assert "Journal club moved" in sms.body
    with wa_network.sessions() as session:
        [failed] = session.scalars(select(Delivery).where(Delivery.channel == "whatsapp")).all()
    assert failed.status == "failed" and failed.error_code == "whatsapp_window"
    assert "24-hour window" in failed.error_message and "'announcement'" in failed.error_message
    assert "sent by sms instead" in failed.error_message


def test_no_template_and_no_other_channel_says_so_and_is_not_silent(wa_network, wa_out, sms_out, mail_out):
    with transaction(wa_network.sessions) as session:
        lee = session.scalar(select(Member).where(Member.phone == LEE))
        lee.email = None  # no other channel at all: no email, SMS stopped
        lee.sms_opted_out_at = datetime.now(timezone.utc)
        notice_id = create_notice(session, kind="announcement", title="Journal club", lists=["tft"],
                                  channels="whatsapp").id
    send_notice(wa_network, notice_id)
    run_worker(wa_network)
    assert to_lee(wa_out) == []
    with wa_network.sessions() as session:
        [failed] = session.scalars(select(Delivery).where(Delivery.channel == "whatsapp")).all()
    assert failed.error_code == "whatsapp_window" and "no other channel" in failed.error_message


def test_a_relayed_reply_outside_the_window_uses_the_relay_template(wa_network, wa_out):
    last_wrote(wa_network, LEE, WROTE)
    with time_machine.travel(WROTE + timedelta(days=2), tick=False):
        new_case_notice(wa_network, "C1", ["tft"])
        run_worker(wa_network)
        wa_out.sent.clear()
        from tests.helpers import record_sms
        record_sms(wa_network, "+821012345603", "C1 agree, typical")  # Park, by SMS
        run_worker(wa_network)
    [message] = to_lee(wa_out)
    assert message.content_sid == TEMPLATES["relay"]["en"]
    assert json.loads(message.content_variables)["1"] == "C1"


def test_nobody_is_messaged_on_whatsapp_without_a_recorded_opt_in(wa_network, wa_out):
    new_case_notice(wa_network, "C1", ["tft"])
    run_worker(wa_network)
    with wa_network.sessions() as session:
        priya = session.scalar(select(Member).where(Member.phone == PRIYA))
        assert priya.whatsapp_discussion and priya.whatsapp_opted_in_at is None
        assert session.scalars(select(Delivery).where(Delivery.member_id == priya.id)).all() == []
    assert all("919812300099" not in m.to for m in wa_out.sent)


def test_opt_in_withdrawn_after_planning_is_checked_at_send_time(wa_network, wa_out):
    new_case_notice(wa_network, "C1", ["tft"])
    with transaction(wa_network.sessions) as session:
        session.scalar(select(Member).where(Member.phone == LEE)).whatsapp_opted_in_at = None
    run_worker(wa_network)
    assert to_lee(wa_out) == []
    with wa_network.sessions() as session:
        [row] = session.scalars(select(Delivery).where(Delivery.channel == "whatsapp")).all()
    assert row.error_code == "whatsapp_opt_in"


@pytest.fixture
def off_services(tmp_path, database_url, sms_out, mail_out, wa_out):
    from tests.conftest import make_settings
    settings = make_settings(tmp_path / "var", database_url)  # RELAY_TWILIO_WHATSAPP_FROM unset
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": sms_out, "email": mail_out, "whatsapp": wa_out})
    yield services
    services.dispose()


def test_with_the_channel_off_nothing_goes_on_whatsapp_and_members_get_email(off_services, wa_out, mail_out):
    from relay.library.cases import create_case
    from relay.members.directory import import_members
    from tests.whatsapp_fixtures import WA_CSV

    with transaction(off_services.sessions) as session:
        assert not import_members(session, WA_CSV).errors
        create_case(session, "Fever", chief_complaint="fever")
    new_case_notice(off_services, "C1", ["tft"])
    run_worker(off_services)
    assert wa_out.sent == []
    assert "minho@example.org" in {m.to for m in mail_out.sent}
    with off_services.sessions() as session:
        [row] = session.scalars(select(Delivery).where(Delivery.channel == "whatsapp")).all()
    assert row.error_code == "whatsapp_off" and "RELAY_TWILIO_WHATSAPP_FROM" in row.error_message


def test_a_whatsapp_message_opens_the_window_from_when_it_arrived(wa_network, wa_out):
    with time_machine.travel(WROTE, tick=False):
        record_whatsapp(wa_network, text_form(LEE, "C1 thanks", "SM" + "0a" * 16))
        run_worker(wa_network)
    with wa_network.sessions() as session:
        assert session.scalar(select(Member).where(Member.phone == LEE)).whatsapp_last_inbound_at == WROTE


def test_a_batch_routes_whatsapp_by_the_window_and_queues_its_fallbacks(wa_network, wa_out, sms_out):
    from relay.outbound.bulk import send_batch

    with transaction(wa_network.sessions) as session:  # Lee takes SMS too; the announcement has no template
        session.scalar(select(Member).where(Member.phone == LEE)).sms_discussion = True
        notice_id = create_notice(session, kind="announcement", title="Journal club", lists=["tft"],
                                  channels="whatsapp").id
    new_case_notice(wa_network, "C1", ["tft"])  # Lee never wrote: a template
    send_notice(wa_network, notice_id)
    wa_network.dispatcher.deliveries.clear()
    for batch in list(wa_network.dispatcher.batches):
        send_batch(wa_network, batch)
    [template] = to_lee(wa_out)
    assert template.content_sid == TEMPLATES["new_case"]["en"]
    with wa_network.sessions() as session:
        failed = session.scalar(select(Delivery).where(Delivery.channel == "whatsapp", Delivery.status == "failed"))
        assert failed.error_code == "whatsapp_window"
        fallback = session.scalar(select(Delivery).where(Delivery.dedupe_key == failed.dedupe_key[:-len("whatsapp")]
                                                         + "sms"))
    assert fallback is not None and fallback.id in wa_network.dispatcher.deliveries  # queued after the commit


def test_the_console_notice_page_shows_why_whatsapp_fell_back(wa_network):
    from tests.console_helpers import KIM as KIM_EMAIL
    from tests.console_helpers import give_password, sign_in
    from webhooks.app import create_app

    with transaction(wa_network.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Journal club", lists=["tft"],
                                  channels="whatsapp").id
    send_notice(wa_network, notice_id)
    run_worker(wa_network)
    give_password(wa_network, KIM_EMAIL)
    client = create_app(services=wa_network).test_client()
    sign_in(client, KIM_EMAIL)
    page = client.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert "whatsapp_window" in page and "24-hour window" in page
