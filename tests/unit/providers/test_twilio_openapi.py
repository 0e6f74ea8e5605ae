"""What relay sends to Twilio, checked against Twilio's own API description (twilio-oai).

Real messages go through relay.providers.twilio_sms.TwilioSmsSender (twilio-python over real HTTP)
to the stand-in on loopback, which keeps the exact bytes and headers; each request is then
validated with openapi-core against `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
(path parameter, HTTP Basic security, form body) as if it had gone to https://api.twilio.com."""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from relay.infra.settings import Settings
from relay.model.messages import OutboundMessage
from relay.providers.twilio_sms import TwilioSmsSender
from tests import paths
from tests.conftest import IN_CI, PUBLIC_BASE
from tests.standins.twilio_api import TwilioStandIn

SPEC_PATH = paths.SHARED / "twilio-oai/twilio_api_v2010.json"
TWILIO_HOST = "https://api.twilio.com"  # the spec's server
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "openapi-test-token-0123456789abcd"
FROM_NUMBER = "+15005550006"
MESSAGING_SERVICE_SID = "MG" + "fedcba9876543210" * 2
STATUS_CALLBACK = f"{PUBLIC_BASE}/webhooks/twilio/status"

MESSAGES = [
    OutboundMessage(1, "sms", "+821012345601", "C1 Lee Minho: Looks like organising pneumonia"),
    OutboundMessage(2, "sms", "+33612345604", "C1에 게시되어 4명에게 전달되었습니다."),
    OutboundMessage(3, "sms", "+12025550105", "a&b=c+d %20 100% sure?\nsecond line; \"quoted\" <tag>"),
    OutboundMessage(4, "sms", "+821012345603", "x" * 1600),
]


@pytest.fixture(scope="module")
def spec() -> dict:
    if not SPEC_PATH.exists():
        message = f"Twilio's OpenAPI description is not at {SPEC_PATH}"
        if IN_CI:
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def twilio_api(spec) -> OpenAPI:
    # from_dict, not from_file_path: the latter parses JSON with a YAML loader, which rejects the
    # spec's surrogate-pair escapes ("\ud83d\udc4d").
    return OpenAPI.from_dict(spec)


@pytest.fixture(scope="module")
def create_message_fields(spec) -> set[str]:
    operation = spec["paths"][MESSAGES_PATH]["post"]
    schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    return set(schema["properties"])


# ---------------------------------------------------------------- capturing the exact requests


@dataclass
class RawRequest:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes


class CapturingStandIn(TwilioStandIn):
    """The Twilio stand-in, also keeping each request's method, target, headers and raw body."""

    def __init__(self):
        self.raw: list[RawRequest] = []
        super().__init__()

    def _handler_class(self):
        base, standin = super()._handler_class(), self

        class Handler(base):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with standin.lock:
                    standin.raw.append(RawRequest(self.command, self.path, dict(self.headers.items()), body))
                original, self.rfile = self.rfile, io.BytesIO(body)
                try:
                    super().do_POST()
                finally:
                    self.rfile = original  # keep-alive: the next request comes on the real socket

        return Handler


@dataclass
class TwilioRequest:
    """A captured request in openapi-core's Request protocol, as received by `host_url`."""

    raw: RawRequest
    host_url: str = TWILIO_HOST
    parameters: RequestParameters = field(init=False)

    def __post_init__(self):
        query = urlsplit(self.raw.target).query
        self.parameters = RequestParameters(query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
                                            header=Headers(self.raw.headers))

    @property
    def path(self) -> str:
        return urlsplit(self.raw.target).path

    @property
    def method(self) -> str:
        return self.raw.method.lower()

    @property
    def content_type(self) -> str:
        return Headers(self.raw.headers).get("Content-Type", "").lower()

    @property
    def body(self) -> bytes | None:
        return self.raw.body


@pytest.fixture
def standin():
    standin = CapturingStandIn().start()
    yield standin
    standin.stop()


def sender_for(standin: TwilioStandIn, tmp_path: Path, twilio_from: str) -> TwilioSmsSender:
    settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT_SID,
                        twilio_auth_token=AUTH_TOKEN, twilio_from=twilio_from, twilio_api_url=standin.url)
    assert settings.twilio_configured
    return TwilioSmsSender(settings, timeout=5)


def send_all(standin: CapturingStandIn, tmp_path: Path, twilio_from: str) -> list[RawRequest]:
    sender = sender_for(standin, tmp_path, twilio_from)
    for message in MESSAGES:
        result = sender.send(message)
        assert result.provider_message_id.startswith("SM") and result.provider_status == "queued"
    with standin.lock:
        raw = list(standin.raw)
    assert len(raw) == len(MESSAGES)
    assert [r.status for r in standin.requests] == [201] * len(MESSAGES)
    return raw


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize("twilio_from, sender_field", [
    (FROM_NUMBER, "From"),
    (MESSAGING_SERVICE_SID, "MessagingServiceSid"),
], ids=["from-number", "messaging-service"])
def test_every_message_request_matches_twilios_openapi(standin, tmp_path, twilio_api, create_message_fields,
                                                      twilio_from, sender_field):
    raw_requests = send_all(standin, tmp_path, twilio_from)
    for raw, message in zip(raw_requests, MESSAGES):
        request = TwilioRequest(raw)
        twilio_api.validate_request(request)  # raises on any mismatch with the spec
        result = twilio_api.unmarshal_request(request)
        assert not result.errors, result.errors

        assert request.method == "post" and request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert result.parameters.path == {"AccountSid": ACCOUNT_SID}
        scheme, _, credentials = Headers(raw.headers)["Authorization"].partition(" ")
        assert scheme == "Basic"
        assert base64.b64decode(credentials).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
        assert request.content_type.startswith("application/x-www-form-urlencoded")

        sent = parse_qs(raw.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        assert all(len(values) == 1 for values in sent.values()), sent  # no repeated fields
        assert set(sent) <= create_message_fields, set(sent) - create_message_fields  # no misspelt field
        assert set(sent) == {"To", "Body", "StatusCallback", sender_field}  # From xor MessagingServiceSid
        body = result.body
        assert (body["To"], body["Body"], body[sender_field]) == (message.to, message.body, twilio_from)
        assert body["StatusCallback"] == STATUS_CALLBACK
        callback = urlsplit(body["StatusCallback"])  # format "uri" is not enforced by the validator
        assert callback.scheme == "https" and callback.netloc and "_" not in callback.netloc


def test_the_validator_refuses_requests_twilio_would(standin, tmp_path, twilio_api):
    """The check above can fail: altered copies of a good request are refused."""
    good = send_all(standin, tmp_path, FROM_NUMBER)[0]
    twilio_api.validate_request(TwilioRequest(good))
    form = dict(parse_qsl(good.body.decode()))

    def altered(target=None, headers=None, body=None) -> TwilioRequest:
        return TwilioRequest(RawRequest(good.method, target or good.target, headers or dict(good.headers),
                                        good.body if body is None else body))

    def form_without(*names) -> bytes:
        return urlencode({k: v for k, v in form.items() if k not in names}).encode()

    no_auth = {k: v for k, v in good.headers.items() if k.lower() != "authorization"}
    as_json = {**{k: v for k, v in good.headers.items() if k.lower() != "content-type"},
               "Content-Type": "application/json"}
    bad = {
        "missing To": altered(body=form_without("To")),
        "no Basic auth": altered(headers=no_auth),
        "malformed AccountSid": altered(target="/2010-04-01/Accounts/AC123/Messages.json"),
        "malformed MessagingServiceSid": altered(body=urlencode({**form, "MessagingServiceSid": "MG1"}).encode()),
        "JSON instead of a form": altered(headers=as_json, body=json.dumps(form).encode()),
        "not the Messages resource": altered(target=f"/2010-04-01/Accounts/{ACCOUNT_SID}/Message.json"),
    }
    for what, request in bad.items():
        with pytest.raises(OpenAPIError):
            twilio_api.validate_request(request)
            pytest.fail(f"{what}: accepted by the validator")

