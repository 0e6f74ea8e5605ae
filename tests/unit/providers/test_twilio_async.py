"""The lean async Twilio client (relay/providers/twilio_async.py) sends byte for byte what twilio-python
sends, and turns Twilio's answers into what twilio-python turns them into.

The same messages.create parameters go to the capturing stand-in three ways: twilio-python's synchronous
client (requests, what relay/providers/twilio_sms.py sends one by one), twilio-python's own async client
(`create_async`, what the bulk sender used before), and the lean client. Method, target, every header but
the transport's own, and the body bytes must be identical: a plain SMS, non-ASCII and reserved characters,
MMS media (MediaUrl repeated), a Messaging Service, WhatsApp (whatsapp: From and To, a template's
ContentSid and ContentVariables). Then the errors: twilio's exception (status, code, message) and
relay's classification, with a 429's Retry-After, for JSON and non-JSON error bodies."""
from __future__ import annotations

import asyncio

import pytest

from relay.providers import twilio_async
from relay.providers.twilio_async import AsyncTwilioClient
from relay.providers.twilio_sms import classify_error, retry_after_seconds
from tests.conftest import PUBLIC_BASE
from tests.unit.outbound.test_async_batch import TRANSPORT_HEADERS, _unreachable_url
from tests.unit.providers.test_twilio_openapi import CapturingStandIn

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "lean-client-token-0123456789abcd"
CALLBACK = f"{PUBLIC_BASE}/webhooks/twilio/status"

CASES = {
    "sms": {"to": "+821012345601", "status_callback": CALLBACK, "from_": "+15005550006",
            "body": "C1 Lee Minho: Looks like organising pneumonia"},
    "non-ascii and reserved": {"to": "+33612345604", "status_callback": CALLBACK, "from_": "+15005550006",
                               "body": "C1에 게시되어 a&b=c+d %20 100% sure?\nline; \"quoted\" <tag> ~*'()"},
    "empty body": {"to": "+12025550105", "status_callback": CALLBACK, "from_": "+15005550006", "body": ""},
    "messaging service": {"to": "+12025550105", "status_callback": CALLBACK,
                          "messaging_service_sid": "MG" + "fedcba9876543210" * 2, "body": "x" * 1600},
    "mms media": {"to": "+12025550106", "status_callback": CALLBACK, "from_": "+15005550006", "body": "see",
                  "media_url": ["https://relay.example.org/media/a.jpg?x=1&y=2",
                                "https://relay.example.org/media/b.png"]},
    "whatsapp body": {"to": "whatsapp:+821012345601", "status_callback": CALLBACK,
                      "from_": "whatsapp:+14155238886", "body": "C1 새 사례"},
    "whatsapp template": {"to": "whatsapp:+821012345601", "status_callback": CALLBACK,
                          "content_sid": "HX" + "a" * 32,
                          "content_variables": '{"1": "C1", "2": "발열 Fever", "3": "https://x.example/c/1"}',
                          "from_": "whatsapp:+14155238886"},
}


@pytest.fixture
def standin():
    standin = CapturingStandIn().start()
    yield standin
    standin.stop()


def _rewriting(base, api_url):
    class Rewriting(base):
        def request(self, method, url, *args, **kwargs):
            return super().request(method, api_url + url[len(twilio_async.TWILIO_API):], *args, **kwargs)

    return Rewriting


def _twilio_sync(standin, params):
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(ACCOUNT, TOKEN, http_client=_rewriting(TwilioHttpClient, standin.url)())
    try:
        return client.messages.create(**params), None
    except Exception as exc:
        return None, exc


def _twilio_async(standin, params):
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    class Rewriting(AsyncTwilioHttpClient):
        async def request(self, method, url, *args, **kwargs):
            return await super().request(method, standin.url + url[len(twilio_async.TWILIO_API):], *args, **kwargs)

    async def go():
        http = Rewriting(pool_connections=False)
        client = Client(ACCOUNT, TOKEN, http_client=http)
        try:
            return await client.messages.create_async(**params), None
        except Exception as exc:
            return None, exc

    return asyncio.run(go())


def _lean(standin, params):
    async def go():
        client = AsyncTwilioClient(ACCOUNT, TOKEN, standin.url, timeout=10, connections=2)
        try:
            created, failure = await client.create(params)
        finally:
            await client.close()
        return created, failure

    created, failure = asyncio.run(go())
    return created, (failure[0] if failure else None), (failure[1] if failure else None)


def _captured(standin) -> tuple:
    with standin.lock:
        [raw] = standin.raw
        standin.raw.clear()
        standin.requests.clear()
    headers = tuple(sorted((k.lower(), v) for k, v in raw.headers.items() if k.lower() not in TRANSPORT_HEADERS))
    return raw.method, raw.target, headers, raw.body


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_lean_client_sends_byte_identical_requests_to_twilio_pythons(standin, case):
    params = CASES[case]
    sent = {}
    created_sync, error = _twilio_sync(standin, params)
    assert error is None
    sent["sync"] = _captured(standin)
    created_async, error = _twilio_async(standin, params)
    assert error is None
    sent["async"] = _captured(standin)
    created, error, _ = _lean(standin, params)
    assert error is None
    sent["lean"] = _captured(standin)

    assert sent["lean"] == sent["sync"], case
    assert sent["lean"] == sent["async"], case
    method, target, headers, body = sent["lean"]
    assert (method, target) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    assert dict(headers)["authorization"].startswith("Basic ")
    assert created.sid.startswith("SM") and created.status == created_sync.status == "queued"
    if "media_url" in params:
        assert body.count(b"MediaUrl=") == 2


def test_an_unknown_parameter_is_refused_not_dropped():
    with pytest.raises(TypeError, match="send_at"):
        twilio_async.form({"to": "+12025550105", "body": "x", "send_at": "2026-12-06T00:00:00Z"})


@pytest.mark.parametrize("case", sorted(CASES) + ["not strings"])
def test_the_form_is_urlencode_of_twilios_fields_also_when_its_values_are_remembered(case):
    """form() keeps the encoding of values it has seen (a broadcast's one Body): the second body is the
    first, and both are what urlencode writes for the same pairs in twilio's order."""
    from urllib.parse import urlencode

    params = CASES[case] if case != "not strings" else {"to": "+12025550105", "body": 42, "media_url": [b"a&b"]}
    pairs = [(field, item) for keyword, field in twilio_async.FIELDS if params.get(keyword) is not None
             for item in (params[keyword] if isinstance(params[keyword], (list, tuple)) else (params[keyword],))]
    expected = urlencode(pairs).encode("ascii")
    assert twilio_async.form(params) == expected
    assert twilio_async.form(dict(params)) == expected


def _fields(error) -> tuple:
    return (str(error), error.code, error.retryable, error.opted_out, error.retry_after, error.throttled)


ERRORS = {
    "400 21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "400 21610 opted out": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "429 20429": (429, 20429, "Too Many Requests"),
    "503 no code": (503, None, "Service Unavailable"),
}


@pytest.mark.parametrize("fault", sorted(ERRORS))
def test_errors_are_twilio_pythons_and_classified_alike(standin, fault):
    status, code, message = ERRORS[fault]
    to = "+12025550107"
    params = {"to": to, "status_callback": CALLBACK, "from_": "+15005550006", "body": "x"}
    standin.fail_to(to, status, code, message)
    _, sync_error = _twilio_sync(standin, params)
    _, async_error = _twilio_async(standin, params)
    _, lean_error, headers = _lean(standin, params)
    for error in (sync_error, async_error):
        assert type(lean_error) is type(error)
        assert (lean_error.status, lean_error.code, lean_error.msg) == (error.status, error.code, error.msg)
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    assert retry_after == (1.0 if status == 429 else None)
    classified = classify_error(lean_error, retry_after)
    assert _fields(classified) == _fields(classify_error(sync_error, retry_after))
    assert classified.throttled == (status == 429)


def test_a_non_json_error_body_is_twilio_pythons_too(standin):
    class Garbled(CapturingStandIn):
        def _handler_class(self):
            base = super()._handler_class()

            class Handler(base):
                def _reply(self, status, payload):
                    body = b"<html>bad gateway</html>"
                    self.send_response(502)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            return Handler

    garbled = Garbled().start()
    try:
        params = {"to": "+12025550108", "status_callback": CALLBACK, "from_": "+15005550006", "body": "x"}
        _, sync_error = _twilio_sync(garbled, params)
        _, lean_error, _ = _lean(garbled, params)
    finally:
        garbled.stop()
    assert (lean_error.status, lean_error.code, lean_error.msg) == (sync_error.status, sync_error.code,
                                                                    sync_error.msg) == (502, 502,
                                                                                        "Unable to create record")
    assert _fields(classify_error(lean_error)) == _fields(classify_error(sync_error))


def test_unreachable_is_a_network_error():
    class Nowhere:
        url = _unreachable_url()

    params = {"to": "+12025550109", "status_callback": CALLBACK, "from_": "+15005550006", "body": "x"}
    _, lean_error, _ = _lean(Nowhere, params)
    error = twilio_async.network_error(lean_error)
    assert error is not None and error.code == "network" and error.retryable


def test_warm_up_loads_the_lean_clients_aiohttp_before_the_first_send(tmp_path):
    """A pool process warms up before its first task (workers/tasks.py): with RELAY_SEND_ASYNC the lean client's
    aiohttp is imported then, not inside the first batch of a broadcast (~0.2 s of its CPU, seen in the bench)."""
    from tests.helpers import fresh_python

    script = (
        "import sys\n"
        "from relay.providers.twilio_sms import TwilioSmsSender\n"
        "from tests.conftest import make_settings\n"
        f"settings = make_settings({str(tmp_path)!r}, 'sqlite://', twilio_account_sid='AC' + 'a' * 32,\n"
        "                         twilio_from='+15005550006', send_async=True)\n"
        "sender = TwilioSmsSender(settings)\n"
        "before = 'aiohttp' in sys.modules\n"
        "sender.warm_up()\n"
        "print(before, 'aiohttp' in sys.modules)\n")
    assert fresh_python(script) == ["False", "True"]
