"""issue 17: every escalation call relay places (relay.providers.twilio_voice, twilio-python over real HTTP to
the stand-in) is checked against Twilio's OpenAPI description of POST .../Calls.json, as the SMS requests
are in test_twilio_openapi.py (same capture, same openapi-core validation)."""
from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode

import pytest
from openapi_core.exceptions import OpenAPIError
from werkzeug.datastructures import Headers

from relay.infra.settings import Settings
from relay.model.messages import OutboundMessage, SendError
from relay.providers.twilio_voice import TwilioVoiceSender
from relay.render.twiml import call_twiml
from tests.conftest import PUBLIC_BASE
from tests.unit.providers.test_twilio_openapi import (  # noqa: F401 (fixtures)
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    MESSAGING_SERVICE_SID,
    RawRequest,
    TwilioRequest,
    spec,
    standin,
    twilio_api,
)

CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
GATHER = f"{PUBLIC_BASE}/webhooks/twilio/voice/gather/12-3-abcdefghijklmnop"
CALLS = [
    OutboundMessage(1, "voice", "+821012345601", call_twiml("격리 지침 변경", "ko", "relay", GATHER)),
    OutboundMessage(2, "voice", "+33612345604", call_twiml('Masks & "N95" <now>', "en", "relay", GATHER)),
]


@pytest.fixture(scope="module")
def call_fields(spec) -> set[str]:  # noqa: F811
    schema = spec["paths"][CALLS_PATH]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    return set(schema["properties"])


def sender(standin, tmp_path, twilio_from: str, numbers=()) -> TwilioVoiceSender:  # noqa: F811
    return TwilioVoiceSender(Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT_SID,
                                      twilio_auth_token=AUTH_TOKEN, twilio_from=twilio_from,
                                      twilio_api_url=standin.url, twilio_numbers=numbers), timeout=5)


@pytest.mark.parametrize("twilio_from,numbers", [(FROM_NUMBER, ()), (MESSAGING_SERVICE_SID, (FROM_NUMBER,))],
                         ids=["from-number", "messaging-service-uses-our-number"])
def test_every_call_request_matches_twilios_openapi(standin, tmp_path, twilio_api, call_fields,  # noqa: F811
                                                    twilio_from, numbers):
    voice = sender(standin, tmp_path, twilio_from, numbers)
    for message in CALLS:
        assert voice.send(message).provider_message_id.startswith("CA")
    with standin.lock:
        raw = list(standin.raw)
    assert len(raw) == len(CALLS) and [r.status for r in standin.requests] == [201] * len(CALLS)
    for request_raw, message in zip(raw, CALLS):
        request = TwilioRequest(request_raw)
        twilio_api.validate_request(request)  # raises on any mismatch with the spec
        result = twilio_api.unmarshal_request(request)
        assert not result.errors, result.errors
        assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        scheme, _, credentials = Headers(request_raw.headers)["Authorization"].partition(" ")
        assert scheme == "Basic" and base64.b64decode(credentials).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
        sent = parse_qs(request_raw.body.decode(), keep_blank_values=True, strict_parsing=True)
        assert set(sent) == {"To", "From", "Twiml"} and set(sent) <= call_fields
        assert (result.body["To"], result.body["From"], result.body["Twiml"]) == (message.to, FROM_NUMBER,
                                                                                  message.body)
    placed = standin.calls
    assert [c.gather_url for c in placed] == [GATHER, GATHER]
    assert ("en-US", 'Masks & "N95" <now>') in placed[1].said  # escaped, read back intact


def test_the_validator_refuses_a_call_twilio_would(standin, tmp_path, twilio_api):  # noqa: F811
    sender(standin, tmp_path, FROM_NUMBER).send(CALLS[1])
    good = standin.raw[0]
    form = {k: v[0] for k, v in parse_qs(good.body.decode()).items()}
    for what, body in {"missing To": {k: v for k, v in form.items() if k != "To"},
                       "missing From": {k: v for k, v in form.items() if k != "From"}}.items():
        with pytest.raises(OpenAPIError):
            twilio_api.validate_request(TwilioRequest(RawRequest(good.method, good.target, dict(good.headers),
                                                                 urlencode(body).encode())))
            pytest.fail(f"{what}: accepted by the validator")


def test_a_messaging_service_without_numbers_cannot_call(standin, tmp_path):  # noqa: F811
    with pytest.raises(SendError) as refused:
        sender(standin, tmp_path, MESSAGING_SERVICE_SID).send(CALLS[0])
    assert refused.value.code == "no_caller_id" and not refused.value.retryable
