"""Issue 13 item 6: the email webhooks authenticate before they parse anything large.

A sync web worker also takes Twilio's webhooks, so an unauthenticated request must cost little: SendGrid
and Postmark are checked (path token / Basic auth) before the body is read at all; Mailgun's signature is
inside the body, so the body is read (bounded by RELAY_MAX_EMAIL_BYTES) and stream-parsed by werkzeug with
caps on parts, and relay's own (costly) parse runs only once the signature verifies."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from urllib.parse import urlencode

import pytest

from relay.providers import forms
from relay.services import build_services
from tests.conftest import make_settings
from webhooks.app import create_app

KEY = "mailgun-signing-key"
MIB = 1024 * 1024
CPU_BUDGET = 0.3  # seconds of this process's CPU for one refused 20 MiB request (before the fix: 1.6 s)


@pytest.fixture
def app_client(tmp_path, database_url):
    settings = make_settings(tmp_path / "var", database_url, mailgun_signing_key=KEY, sendgrid_secret="sg-secret",
                             postmark_user="pm", postmark_password="pw", mail_domain="relay.example.org",
                             secret_key="s3cret")
    services = build_services(settings)
    yield create_app(services=services).test_client()
    services.dispose()


@pytest.fixture
def no_relay_parse(monkeypatch):
    """Fail the test if relay's own form parser (the email package, slow on big bodies) is reached."""
    def refuse(*args, **kwargs):
        raise AssertionError("relay parsed the body of an unauthenticated request")

    monkeypatch.setattr(forms, "parse_form", refuse)
    for name in ("mailgun", "sendgrid"):
        monkeypatch.setattr(f"relay.providers.{name}.parse_form", refuse)


class CountingStream(io.BytesIO):
    """A request body that counts what the server read of it."""

    def __init__(self, size: int):
        super().__init__(b"x" * size)
        self.read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readline(self, size=-1):
        data = super().readline(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.read_bytes += n
        return n


def _multipart(fields: dict[str, str], big: int, boundary: str = "b0undary") -> bytes:
    out = io.BytesIO()
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="attachment-1"; filename="x.bin"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode())
    out.write(b"AAAA\r\n" * (big // 6))  # short lines: the email package's parser takes seconds over them
    out.write(b"\r\n")
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


UNSIGNED = {"timestamp": str(int(time.time())), "token": "t" * 50, "signature": "0" * 64}


def _cpu(call):
    start = time.process_time()
    result = call()
    return result, time.process_time() - start


def test_an_unsigned_20_mib_multipart_mailgun_post_is_refused_cheaply(app_client, no_relay_parse):
    body = _multipart(UNSIGNED, 20 * MIB)
    response, cpu = _cpu(lambda: app_client.post("/webhooks/email/mailgun", data=body,
                                                 content_type="multipart/form-data; boundary=b0undary"))
    assert response.status_code == 403
    assert b"bad signature" in response.data
    assert cpu < CPU_BUDGET, f"refusing an unsigned 20 MiB POST took {cpu:.2f} s of CPU"


def test_an_unsigned_20_mib_urlencoded_mailgun_post_is_refused_cheaply(app_client, no_relay_parse):
    body = urlencode({"body-plain": "x" * (20 * MIB), **UNSIGNED}).encode()
    response, cpu = _cpu(lambda: app_client.post("/webhooks/email/mailgun", data=body,
                                                 content_type="application/x-www-form-urlencoded"))
    assert response.status_code == 403
    assert cpu < CPU_BUDGET, f"refusing an unsigned 20 MiB POST took {cpu:.2f} s of CPU"


def test_a_mailgun_post_with_thousands_of_parts_is_refused_while_parsing(app_client, no_relay_parse):
    timestamp, token = str(int(time.time())), "a" * 50
    signature = hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    parts = "".join(f'--b\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n' for i in range(5000))
    body = (parts + "".join(f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in
                            {"timestamp": timestamp, "token": token, "signature": signature}.items())
            + "--b--\r\n").encode()
    response = app_client.post("/webhooks/email/mailgun", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413


@pytest.mark.parametrize("provider, headers", [
    ("sendgrid", {}),
    ("sendgrid", {"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}),
    ("postmark", {}),
    ("postmark", {"Authorization": "Basic " + base64.b64encode(b"pm:wrong").decode()}),
])
def test_sendgrid_and_postmark_refuse_before_reading_the_body(app_client, no_relay_parse, provider, headers):
    stream = CountingStream(20 * MIB)
    content_type = "application/json" if provider == "postmark" else "multipart/form-data; boundary=xYzZY"
    response = app_client.post(f"/webhooks/email/{provider}", input_stream=stream, content_length=20 * MIB,
                               content_type=content_type, headers=headers)
    assert response.status_code == 403
    assert stream.read_bytes == 0


def test_a_body_over_the_email_limit_is_refused_unread(app_client):
    stream = CountingStream(30 * MIB)
    response = app_client.post("/webhooks/email/mailgun", input_stream=stream, content_length=30 * MIB,
                               content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert stream.read_bytes == 0
