"""relay/providers/whatsapp.py: what relay sends to Twilio for WhatsApp (free-form and Content API
templates), checked against Twilio's OpenAPI description over real HTTP to the stand-in; WhatsApp's
630xx errors classified; the templates file; the recorded webhooks parsed."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from relay.infra.settings import Settings, SettingsError, parse_whatsapp_from
from relay.model.messages import OutboundMessage, SendError
from relay.providers import twilio_sms, whatsapp
from tests.unit.providers.test_twilio_openapi import (  # noqa: F401 (fixtures)
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGING_SERVICE_SID,
    PUBLIC_BASE,
    STATUS_CALLBACK,
    TwilioRequest,
    create_message_fields,
    spec,
    standin,
    twilio_api,
)
from tests.whatsapp_fixtures import load_form

WA_FROM = "whatsapp:+14155238886"
TEMPLATE_SID = "HX" + "b" * 32
VARIABLES = json.dumps({"1": "C1", "2": "Fever and ground-glass opacities",
                        "3": "https://relay.example.org/library/cases/C1"})
MESSAGES = [
    OutboundMessage(1, "whatsapp", "whatsapp:+821012345602", "C1 Lee Minho: Looks like organising pneumonia"),
    OutboundMessage(2, "whatsapp", "whatsapp:+33612345604", "", content_sid=TEMPLATE_SID, content_variables=VARIABLES),
    OutboundMessage(3, "whatsapp", "+919812300099", "C1에 게시되어 4명에게 전달되었습니다."),  # prefix added
]


def sender(standin, tmp_path, whatsapp_from: str = WA_FROM) -> whatsapp.WhatsAppSender:
    settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT_SID,
                        twilio_auth_token=AUTH_TOKEN, twilio_from="+15005550006", twilio_api_url=standin.url,
                        whatsapp_from=whatsapp_from)
    return whatsapp.WhatsAppSender(settings, timeout=5)


@pytest.mark.parametrize("whatsapp_from, sender_field", [
    (WA_FROM, "From"), (MESSAGING_SERVICE_SID, "MessagingServiceSid"),
], ids=["whatsapp-sender", "messaging-service"])
def test_every_whatsapp_request_matches_twilios_openapi(standin, tmp_path, twilio_api, create_message_fields,
                                                        whatsapp_from, sender_field):
    send = sender(standin, tmp_path, whatsapp_from)
    for message in MESSAGES:
        assert send.send(message).provider_message_id.startswith("SM")
    with standin.lock:
        raw = list(standin.raw)
    assert len(raw) == len(MESSAGES)
    for request_bytes, message in zip(raw, MESSAGES):
        request = TwilioRequest(request_bytes)
        twilio_api.validate_request(request)  # raises on any mismatch with the spec
        result = twilio_api.unmarshal_request(request)
        assert not result.errors, result.errors
        sent = parse_qs(request_bytes.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in sent.values()) and set(sent) <= create_message_fields
        body = result.body
        assert body["To"].startswith("whatsapp:+") and body["To"].endswith(message.to.rpartition("+")[2])
        assert body[sender_field] == whatsapp_from and body["StatusCallback"] == STATUS_CALLBACK
        if message.content_sid:  # a template: ContentSid + ContentVariables (a JSON string), never a Body
            assert set(sent) == {"To", "ContentSid", "ContentVariables", "StatusCallback", sender_field}
            assert body["ContentSid"] == TEMPLATE_SID
            assert json.loads(body["ContentVariables"])["1"] == "C1"
        else:
            assert set(sent) == {"To", "Body", "StatusCallback", sender_field}
            assert body["Body"] == message.body


@pytest.mark.parametrize("status, code, expect", [
    (400, 63016, "final"), (400, 63024, "final"), (429, 63018, "retryable"), (400, 63038, "retryable"),
    (400, 63014, "opted_out"), (400, 21211, "final"),
])
def test_whatsapp_errors_over_http_are_final_retryable_or_an_opt_out(standin, tmp_path, status, code, expect):
    standin.fail_to("whatsapp:+821012345602", status, code)
    with pytest.raises(SendError) as caught:
        sender(standin, tmp_path).send(MESSAGES[0])
    error = caught.value
    assert error.code == str(code)
    assert (error.retryable, error.opted_out) == {"final": (False, False), "retryable": (True, False),
                                                 "opted_out": (False, True)}[expect]
    assert str(code) in str(error)


def test_templates_by_kind_and_language(tmp_path):
    path = tmp_path / "t.json"
    assert whatsapp.load_templates(path) == {}  # no file: no templates, relay falls back
    path.write_text(json.dumps({"_comment": "x", "new_case": {"en": "HX1", "ko": "HX2"}}))
    templates = whatsapp.load_templates(path)
    assert whatsapp.template_for(templates, "new_case", "ko") == ("HX2", "ko")
    assert whatsapp.template_for(templates, "new_case", "fr") == ("HX1", "en")
    assert whatsapp.template_for(templates, "relay", "en") is None
    path.write_text(json.dumps({"new_case": {"en": "not-a-sid"}}))
    with pytest.raises(whatsapp.TemplateError, match="Content SIDs"):
        whatsapp.load_templates(path)
    path.write_text("{")
    with pytest.raises(whatsapp.TemplateError, match="JSON"):
        whatsapp.load_templates(path)
    assert json.loads(whatsapp.template_variables("", "", "")) == {"1": "-", "2": "-", "3": "-"}


def test_the_shipped_example_templates_file_loads():
    from tests import paths
    example = paths.REPO_ROOT / "config" / "whatsapp_templates.example.json"
    templates = whatsapp.load_templates(example)
    assert {"new_case", "relay"} <= set(templates)


def test_the_recorded_webhooks_parse():
    text = load_form("text.txt")
    message = twilio_sms.parse_inbound(text)
    assert message.sender == "whatsapp:+821012345602" and message.body.startswith("C1 ")
    extras = whatsapp.extras(text)
    assert (extras.number, extras.profile_name, extras.wa_id, extras.message_type) == (
        "+821012345602", "Minho", "821012345602", "text")
    location = whatsapp.extras(load_form("location.txt"))
    assert location.is_location and (location.latitude, location.longitude) == ("37.5796", "126.9770")
    media = twilio_sms.parse_inbound(load_form("media.txt"))
    assert media.num_media == 1 and media.provider_message_id.startswith("MM")
    for name, word in (("status_sent.txt", "sent"), ("status_delivered.txt", "delivered"), ("status_read.txt", "read")):
        update = twilio_sms.parse_status(load_form(name, SMSID_PLACEHOLDER="SM" + "c" * 32))
        assert (update.provider_status, update.status) == (word, word)


def test_the_whatsapp_sender_setting():
    assert parse_whatsapp_from("") == ""
    assert parse_whatsapp_from("+14155238886") == "whatsapp:+14155238886"
    assert parse_whatsapp_from("whatsapp:+14155238886") == "whatsapp:+14155238886"
    assert parse_whatsapp_from(MESSAGING_SERVICE_SID) == MESSAGING_SERVICE_SID
    with pytest.raises(SettingsError, match="RELAY_TWILIO_WHATSAPP_FROM"):
        parse_whatsapp_from("whatsapp:0101234")
    settings = Settings.from_env({"RELAY_TWILIO_WHATSAPP_FROM": "whatsapp:+14155238886"})
    assert settings.whatsapp_enabled and settings.whatsapp_number == "whatsapp:+14155238886"
    assert not Settings.from_env({}).whatsapp_enabled


def test_the_whatsapp_sender_has_its_own_pace(tmp_path):
    from relay.infra.ratelimit import Rate

    def make(whatsapp_from: str) -> whatsapp.WhatsAppSender:
        settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT_SID,
                            twilio_auth_token=AUTH_TOKEN, twilio_from="+15005550006", whatsapp_from=whatsapp_from)
        return whatsapp.WhatsAppSender(settings)

    one = make(WA_FROM)
    assert one.rate == Rate(80.0) and one.rate_key == f"whatsapp:{WA_FROM}"  # not the SMS long code's 1/s
    assert make(MESSAGING_SERVICE_SID).rate is None


def test_a_higher_approved_whatsapp_throughput_is_a_setting(tmp_path):
    """RELAY_WHATSAPP_RATE: Twilio raises a WhatsApp sender's throughput on request (80 messages a second by
    default); relay paces it at the rate it is given, a Messaging Service's pool included, 0 for none."""
    from relay.infra.ratelimit import Rate

    def make(whatsapp_from: str, rate: str | None) -> whatsapp.WhatsAppSender:
        env = {"RELAY_TWILIO_WHATSAPP_FROM": whatsapp_from, **({"RELAY_WHATSAPP_RATE": rate} if rate else {})}
        base = Settings.from_env(env)
        settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT_SID,
                            twilio_auth_token=AUTH_TOKEN, twilio_from="+15005550006",
                            whatsapp_from=base.whatsapp_from, whatsapp_rate=base.whatsapp_rate)
        return whatsapp.WhatsAppSender(settings)

    assert make(WA_FROM, None).rate == Rate(80.0)  # auto: Twilio's default for one sender
    assert make(WA_FROM, "auto").rate == Rate(80.0)
    assert make(WA_FROM, "250").rate == Rate(250.0)
    assert make(WA_FROM, "0.5").rate == Rate(0.5)
    assert make(WA_FROM, "0").rate is None
    assert make(MESSAGING_SERVICE_SID, None).rate is None  # auto: a service's pool is Twilio's to pace
    assert make(MESSAGING_SERVICE_SID, "400").rate == Rate(400.0)
    for wrong in ("fast", "-1", "80/s", "nan", "inf"):
        with pytest.raises(SettingsError, match="RELAY_WHATSAPP_RATE"):
            Settings.from_env({"RELAY_WHATSAPP_RATE": wrong})
