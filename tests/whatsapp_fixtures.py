"""Fixtures for the WhatsApp tests (issue 19): settings with a WhatsApp sender and templates, services
with a recording WhatsApp sender, and a small network where members take SMS, email and WhatsApp.

Import the fixtures by name into a test module (`from tests.whatsapp_fixtures import ...`)."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.model.messages import OutboundMessage, SendResult
from relay.services import build_services
from tests import paths
from tests.conftest import ACCOUNT_SID, make_settings

WA_FROM = "whatsapp:+14155238886"
RECORDED_ACCOUNT = "AC6e1f7d0c9b8a79685746352413021f0e"  # the account in tests/data/whatsapp/
KIM, LEE, PARK, ALICE, PRIYA = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+919812345605"
PRIYA_WA = "+919812300099"
DATA = paths.DATA / "whatsapp"

# Lee takes WhatsApp only, opted in by a signed form; Priya chose WhatsApp on another number but has no
# recorded opt-in; Kim takes SMS and email, Park SMS, Alice email.
WA_CSV = """name,phone,email,timezone,language,lists,roles,channels,whatsapp,whatsapp_opt_in
Kim Jiwon,+821012345601,jiwon@example.org,Asia/Seoul,ko,tft,coordinator;member,sms;email,,
Lee Minho,+821012345602,minho@example.org,Asia/Seoul,en,tft,member,whatsapp,,signed form 2026-11-02
Park Seoyeon,+821012345603,seoyeon@example.org,Asia/Seoul,en,tft,member,sms,,
Alice Moreau,+33612345604,alice@example.org,Europe/Paris,en,tft,member,email,,
Priya Nair,+919812345605,priya@example.org,Asia/Kolkata,en,tft,member,whatsapp,+919812300099,
"""

TEMPLATES = {"_comment": "test templates", "new_case": {"en": "HX" + "1" * 32, "ko": "HX" + "2" * 32},
             "relay": {"en": "HX" + "3" * 32}}


class WhatsAppRecorder:
    """Captures outbound WhatsApp messages (the provider edge); the OpenAPI test sends them for real."""

    name = "recording-whatsapp"

    def __init__(self):
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        return SendResult(provider_message_id=f"SM{message.delivery_id:032x}")


class Recorder(WhatsAppRecorder):
    name = "recording"

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        prefix = "SM" if message.channel == "sms" else "mail-"
        return SendResult(provider_message_id=f"{prefix}{message.delivery_id:032x}")


def load_form(name: str, **replace: str) -> dict[str, str]:
    """A recorded webhook body from tests/data/whatsapp/ as a form (first value of each key)."""
    raw = (DATA / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        raw = raw.replace(old, new)
    form: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        form.setdefault(key, value)
    return form


@pytest.fixture
def wa_templates(tmp_path) -> Path:
    path = tmp_path / "whatsapp_templates.json"
    path.write_text(json.dumps(TEMPLATES))
    return path


@pytest.fixture
def wa_settings(tmp_path, database_url, wa_templates):
    return make_settings(tmp_path / "var", database_url, whatsapp_from=WA_FROM, whatsapp_templates=wa_templates)


@pytest.fixture
def sms_out():
    return Recorder()


@pytest.fixture
def mail_out():
    return Recorder()


@pytest.fixture
def wa_out():
    return WhatsAppRecorder()


@pytest.fixture
def wa_services(wa_settings, sms_out, mail_out, wa_out):
    services = build_services(wa_settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": sms_out, "email": mail_out, "whatsapp": wa_out})
    yield services
    services.dispose()


@pytest.fixture
def wa_network(wa_services):
    """The WA_CSV members on list 'tft' and case C1 (no notice sent yet)."""
    from relay.library.cases import create_case
    from relay.members.directory import import_members

    with transaction(wa_services.sessions) as session:
        report = import_members(session, WA_CSV)
        assert not report.errors, report.errors
        assert create_case(session, "Fever and ground-glass opacities", chief_complaint="fever").code == "C1"
    return wa_services


def record_whatsapp(services, form: dict[str, str]) -> int:
    """Record an inbound WhatsApp webhook the way the webhook does and dispatch it; the event id."""
    from relay.inbound.record import record_inbound
    from relay.infra.dispatch import dispatch_safely

    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider="twilio", kind="sms", dedupe_key=form["MessageSid"],
                                  raw=urlencode(form), sender=form["From"])
    if recorded.created:
        dispatch_safely(services.dispatcher.process_inbound, recorded.event_id)
    return recorded.event_id


def text_form(sender: str, body: str, sid: str, **extra: str) -> dict[str, str]:
    """The recorded text webhook (text.txt) from another number, with another body and sid."""
    form = load_form("text.txt")
    form.update({"From": f"whatsapp:{sender}", "WaId": sender.lstrip("+"), "Body": body, "MessageSid": sid,
                 "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID})
    form.update(extra)
    return form
