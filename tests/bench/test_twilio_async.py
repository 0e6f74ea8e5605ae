"""The benchmark's asyncio Twilio stand-in (bench/twilio_async.py) answers exactly as the tests' threaded
one (tests/standins/twilio_api.py) — status codes, bodies, Retry-After, injected faults, media — and the
raw-limit client (bench/raw_limit.py) sends the form relay sends, so the baseline does relay's work."""
from __future__ import annotations

import json

import pytest
import requests

from bench import raw_limit
from bench.twilio_async import AsyncTwilioStandIn
from relay.infra.settings import Settings
from relay.model.messages import OutboundMessage
from relay.providers.twilio_sms import TwilioSmsSender
from tests.conftest import PUBLIC_BASE
from tests.standins.smtp_sink import SmtpSink
from tests.standins.twilio_api import TwilioStandIn

ACCOUNT = "AC" + "c" * 32
TOKEN = "stand-in-token"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
VARYING = {"sid", "uri", "date_created", "date_updated"}  # a fresh sid and the clock in every answer


@pytest.fixture
def pair():
    threaded, looped = TwilioStandIn().start(), AsyncTwilioStandIn().start()
    yield threaded, looped
    threaded.stop()
    looped.stop()


def _exchange(standin, script) -> list[tuple]:
    """Run the same requests against a stand-in: [(status, content type, Retry-After, body without what varies)]."""
    answers = []
    for method, path, auth, form, setup in script:
        if setup:
            setup(standin)
        response = requests.request(method, standin.url + path(standin) if callable(path) else standin.url + path,
                                    auth=auth, data=form, timeout=10, allow_redirects=False)
        try:
            body = {k: v for k, v in response.json().items() if k not in VARYING}
        except ValueError:
            body = response.content
        answers.append((response.status_code, response.headers.get("Content-Type", "").split(";")[0],
                        response.headers.get("Retry-After"), response.headers.get("Location"), body))
    return answers


def test_the_asyncio_stand_in_answers_as_the_threaded_one(pair):
    good = {"To": "+821012345601", "From": "+15005550006", "Body": "C1 hello", "StatusCallback": "https://x/s"}
    media = {}

    def add_media(standin, **kwargs):
        media[id(standin)] = standin.add_media(ACCOUNT, b"\xff\xd8jpeg", **kwargs)[len(standin.url):]

    script = [
        ("POST", MESSAGES, (ACCOUNT, TOKEN), good, None),
        ("POST", MESSAGES, ("AC" + "d" * 32, TOKEN), good, None),  # another account
        ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Message.json", (ACCOUNT, TOKEN), good, None),
        ("POST", MESSAGES, (ACCOUNT, TOKEN), {**good, "To": ""}, None),
        ("POST", MESSAGES, (ACCOUNT, TOKEN), good, lambda s: s.fail_to(good["To"], 429, 20429, "Too Many", times=1)),
        ("POST", MESSAGES, (ACCOUNT, TOKEN), good, lambda s: s.fail_next(503, None, "Service Unavailable")),
        ("POST", MESSAGES, (ACCOUNT, TOKEN), good, lambda s: s.fail_to(good["To"], 400, 21610, "unsubscribed",
                                                                         times=1)),
        ("POST", MESSAGES, (ACCOUNT, TOKEN), good, None),  # the faults are used up
        ("GET", lambda s: media[id(s)], (ACCOUNT, TOKEN), None, lambda s: add_media(s, fail_times=1)),
        ("GET", lambda s: media[id(s)], (ACCOUNT, TOKEN), None, None),
        ("GET", lambda s: media[id(s)], None, None, lambda s: setattr(s, "media_auth", (ACCOUNT, TOKEN))),
        ("GET", "/2010-04-01/Accounts/nothing-here", None, None, None),
    ]
    threaded, looped = (_exchange(standin, script) for standin in pair)
    assert [a[0] for a in threaded] == [201, 401, 404, 400, 429, 503, 400, 201, 500, 200, 401, 404]
    assert threaded[4][2] == "1"  # the 429 says when to come back
    assert looped == threaded
    for standin in pair:  # and both keep the same record of what they were sent
        assert [(r.path, r.account_sid, r.auth, r.form, r.status) for r in standin.requests] == \
               [(r.path, r.account_sid, r.auth, r.form, r.status) for r in pair[0].requests]


def test_relays_sender_works_against_it_and_it_keeps_memory_flat(tmp_path):
    standin = AsyncTwilioStandIn(keep=3).start()
    try:
        settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT,
                            twilio_auth_token=TOKEN, twilio_from="+15005550006", twilio_api_url=standin.url)
        sender = TwilioSmsSender(settings, timeout=5)
        results = [sender.send(OutboundMessage(i, "sms", f"+8210123456{i:02d}", "hello")) for i in range(7)]
        assert all(r.provider_message_id.startswith("SM") and r.provider_status == "queued" for r in results)
        assert len(standin.requests) <= 3
    finally:
        standin.stop()


def test_the_raw_limit_client_sends_relays_form_and_emails(tmp_path):
    counted = []
    standin = AsyncTwilioStandIn(on_accept=lambda: counted.append(1)).start()
    sink = SmtpSink().start()
    try:
        settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, twilio_account_sid=ACCOUNT,
                            twilio_auth_token=TOKEN, twilio_from="+15005550006", twilio_api_url=standin.url,
                            smtp_url=sink.url, mail_from="cases@relay.example.org")
        raw = b"From: cases@relay.example.org\r\nTo: raw@bench.example\r\nSubject: C1\r\n\r\nA new case.\r\n"
        cpu = raw_limit.push(settings, 40, 7, raw)
        assert cpu > 0
        assert len(standin.accepted) == 40 and len(counted) == 40
        forms = [r.form for r in standin.accepted]
        assert all(set(f) == {"To", "StatusCallback", "From", "Body"} for f in forms)  # what relay sends
        assert all(f["StatusCallback"] == f"{PUBLIC_BASE}/webhooks/twilio/status" for f in forms)
        assert len({f["To"] for f in forms}) == 40
        assert all(r.auth == (ACCOUNT, TOKEN) for r in standin.accepted)
        assert len(sink.received) == 7 and all(r.data.startswith(b"From: cases@") for r in sink.received)
    finally:
        standin.stop()
        sink.stop()


def test_the_stats_process_counts_only_accepted_messages():
    """bench/standins.py counts through on_accept: a fault is not a message at the provider."""
    counted = []
    standin = AsyncTwilioStandIn(on_accept=lambda: counted.append(1)).start()
    try:
        standin.fail_next(500, None, "boom")
        form = {"To": "+1", "Body": "x"}
        statuses = [requests.post(standin.url + MESSAGES, data=form, auth=(ACCOUNT, TOKEN), timeout=5).status_code
                    for _ in range(2)]
        assert statuses == [500, 201] and len(counted) == 1
        assert json.loads(requests.post(standin.url + MESSAGES, data=form, auth=(ACCOUNT, TOKEN),
                                        timeout=5).text)["status"] == "queued"
    finally:
        standin.stop()


def _raw_exchange(standin, payload: bytes) -> bytes:
    """Send bytes as they are on one connection and read until the stand-in closes it."""
    import socket

    with socket.create_connection((standin.host, standin.port), timeout=5) as sock:
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_it_reads_http_as_a_client_sends_it_and_refuses_what_it_does_not_read():
    import base64

    standin = AsyncTwilioStandIn().start()
    try:
        auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        body = b"To=%2B821012345601&Body=hi"

        def post(extra: str = "", data: bytes = body, version: str = "HTTP/1.1") -> bytes:
            return (f"POST {MESSAGES} {version}\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                    f"Content-Type: application/x-www-form-urlencoded\r\n{extra}").encode() + b"\r\n" + data

        # two requests back to back on one kept-alive connection, the second asking to close it
        answer = _raw_exchange(standin, post(f"Content-Length: {len(body)}\r\n")
                               + post(f"Content-Length: {len(body)}\r\nConnection: close\r\n"))
        assert answer.count(b"HTTP/1.1 201 Created\r\n") == 2 and answer.count(b'"status": "queued"') == 2
        assert b"Connection: close\r\n" in answer.split(b"HTTP/1.1 201")[2]
        assert [r.form["Body"] for r in standin.requests] == ["hi", "hi"]
        # HTTP/1.0 closes after its answer
        assert _raw_exchange(standin, post(f"Content-Length: {len(body)}\r\n", version="HTTP/1.0")).startswith(
            b"HTTP/1.1 201 ")
        # what it does not read is refused, not guessed at
        chunked = post("Transfer-Encoding: chunked\r\n", data=b"5\r\nTo=%2\r\n0\r\n\r\n")
        assert _raw_exchange(standin, chunked).startswith(b"HTTP/1.1 501 ")
        assert _raw_exchange(standin, b"POST\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert _raw_exchange(standin, post("Content-Length: lots\r\n")).startswith(b"HTTP/1.1 400 ")
        assert _raw_exchange(standin, post("Content-Length: -5\r\n")).startswith(b"HTTP/1.1 400 ")
        assert _raw_exchange(standin, post("no colon here\r\n")).startswith(b"HTTP/1.1 400 ")
        assert len(standin.requests) == 3  # the refused ones were never taken for messages
    finally:
        standin.stop()
