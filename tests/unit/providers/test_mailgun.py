"""relay.providers.mailgun against route forward() POSTs (tests/data/mailgun, see SOURCES.md there)."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode

import pytest

from relay.providers import mailgun
from relay.providers.errors import BadWebhook
from relay.providers.mime import email_from_mime
from tests import paths

DATA = paths.DATA / "mailgun"
PNG = (DATA.parent / "mime" / "chest-xray-thumb.png").read_bytes()
SIGNING_KEY = "0f3c6e8a2b5d7f9a1c3e5b7d9f2a4c6e-2c4e6a8b-9d1f3b5c"  # test-only, see SOURCES.md
REPLY = "reply+8f14e45fceea167a@relay.example.org"
THREAD = ("c123.p1.0a9c@relay.example.org", "CAK7bX2m8Qv+3kZ@mail.gmail.com",
          "c123.p2.5f1e@relay.example.org")


def load(name: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a stored POST: a short header block, a blank line, the body bytes."""
    head, body = (DATA / name).read_bytes().split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode("ascii").split("\r\n"))
    return headers["Content-Type"], body


def sign(timestamp: str, token: str, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


VALID = {
    "reply_form.http": dict(
        message_id="CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com", envelope_from="minjun.kim@hospital.example",
        from_address="minjun.kim@hospital.example", from_name="김민준",
        recipients=(REPLY, "c123-team@hospital.example", "sarah.lee@hospital.example"),
        mailbox_hash="8f14e45fceea167a", subject="Re: C123 흉부 X선 소견",
        in_reply_to=("c123.p2.5f1e@relay.example.org",), references=THREAD, attachments=()),
    "attachment_multipart.http": dict(
        message_id="CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com", envelope_from="sarah.lee@hospital.example",
        from_address="sarah.lee@hospital.example", from_name="Dr. Sarah Lee",
        recipients=(REPLY, "c123-team@hospital.example"), mailbox_hash="8f14e45fceea167a",
        subject="Re: C123 chest X-ray", text="Today's film is attached.\n\nSarah\n",
        in_reply_to=("CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org",
                    "CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com")),
    "raw_mime.http": dict(
        message_id="TYCP286MB2305A1F0C3D14E9B8A7B2C4DA1@TYCP286MB2305.JPNP286.PROD.OUTLOOK.COM",
        envelope_from="takahashi.akiko@clinic.example.jp", from_address="takahashi.akiko@clinic.example.jp",
        from_name="高橋 明子", recipients=(REPLY, "c123@relay.example.org", "suzuki.h@clinic.example.jp"),
        mailbox_hash="8f14e45fceea167a", subject="Re: C123 胸部X線の所見について",
        in_reply_to=("c123.p2.5f1e@relay.example.org",), references=THREAD),
    "bounce_null_sender.http": dict(
        message_id="20261127095210.9E0F41A2B4@mx2.hospital.example", envelope_from="",
        from_address="mailer-daemon@mx2.hospital.example", recipients=("relay-bounces+4f1c@relay.example.org",),
        mailbox_hash="4f1c", subject="Undelivered Mail Returned to Sender", html="", in_reply_to=(),
        references=()),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_parse(name):
    email = mailgun.parse(*load(name))
    assert (email.provider, email.provider_message_id) == ("mailgun", "")
    for field, expected in VALID[name].items():
        assert getattr(email, field) == expected, field
    assert REPLY not in (email.header("To") or "")  # the reply address is only in the envelope


@pytest.mark.parametrize("name", sorted(VALID) + ["event_webhook.http"])
def test_every_sample_is_signed_with_the_test_key(name):
    timestamp, token, signature = mailgun.signature_fields(*load(name))
    now = float(timestamp) + 5
    assert mailgun.verify_signature(SIGNING_KEY, timestamp, token, signature, now, 300) is None


def test_body_plain_is_kept_whole_and_stripped_text_ignored():
    email = mailgun.parse(*load("reply_form.http"))
    assert email.text.startswith("네, 동의합니다.")
    assert "> 우하엽 경화가 호전되었습니다.\n" in email.text  # the quote stripped-text leaves out
    assert email.html.startswith('<div dir="ltr">네, 동의합니다.')
    assert email.header("x-mailgun-spf") == "Pass"


def test_attachment():
    (attachment,) = mailgun.parse(*load("attachment_multipart.http")).attachments
    assert (attachment.filename, attachment.content_type) == ("chest-xray-thumb.png", "image/png")
    assert attachment.content == PNG


def test_raw_mime_mode_is_the_message_itself():
    email = mailgun.parse(*load("raw_mime.http"))
    direct = email_from_mime((DATA.parent / "mime" / "iso2022jp_reply.eml").read_bytes(), "mailgun")
    assert (email.text, email.headers) == (direct.text, direct.headers)
    assert "①右下葉" in email.text and email.text.endswith("髙橋 明子\n")


def _edited(name: str, replace: tuple[bytes, bytes] = (b"", b""), **changes: str | None) -> tuple[str, bytes]:
    """A stored urlencoded POST with fields replaced (value) or removed (None), re-encoded by the stdlib."""
    content_type, body = load(name)
    pairs = parse_qsl(body.replace(*replace).decode("ascii"), keep_blank_values=True)
    pairs = [(k, changes.get(k, v)) for k, v in pairs if changes.get(k, v) is not None]
    return content_type, urlencode(pairs).encode("ascii")


@pytest.mark.parametrize("changes, expected", [
    ({"recipient": f"{REPLY}, C123@relay.example.org"},
     (REPLY, "c123@relay.example.org", "c123-team@hospital.example", "sarah.lee@hospital.example")),
    ({"message-headers": None}, (REPLY, "c123-team@hospital.example", "sarah.lee@hospital.example")),
])
def test_recipients(changes, expected):
    assert mailgun.parse(*_edited("reply_form.http", **changes)).recipients == expected


def test_top_level_header_fields_fill_in_without_message_headers():
    email = mailgun.parse(*_edited("reply_form.http", **{"message-headers": None}))
    assert (email.message_id, email.references) == ("CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com", THREAD)


def test_threading_header_names_in_message_headers_are_case_insensitive():
    email = mailgun.parse(*_edited("reply_form.http", (b"%22Message-Id%22", b"%22MESSAGE-ID%22"),
                                   **{"Message-Id": None, "In-Reply-To": None, "References": None}))
    assert "MESSAGE-ID" in [name for name, _ in email.headers]
    assert email.message_id == "CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com"
    assert (email.in_reply_to, email.references) == (("c123.p2.5f1e@relay.example.org",), THREAD)


def test_empty_sender_is_the_null_sender_and_a_missing_one_falls_back_to_return_path():
    assert mailgun.parse(*_edited("reply_form.http", sender="")).envelope_from == ""
    email = mailgun.parse(*_edited("reply_form.http", sender=None))  # Return-Path in message-headers
    assert email.envelope_from == "minjun.kim@hospital.example"


@pytest.mark.parametrize("name, error", [
    ("bad_message_headers.http", "message-headers is not JSON"),
    ("missing_from.http", "no usable From"),
    ("event_webhook.http", "event webhook"),
])
def test_unusable_payloads(name, error):
    with pytest.raises(BadWebhook, match=error):
        mailgun.parse(*load(name))


@pytest.mark.parametrize("content_type, body, error", [
    ("text/plain", b"hello", "expected a form"),
    ("multipart/form-data", b"--x--", "without a boundary"),
    ("application/x-www-form-urlencoded", b"message-headers=%7B%22From%22%3A+%22a%40b%22%7D&from=a%40b.example",
     "list of \\[name, value\\] pairs"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="from"\r\n'
     b"Content-Type: text/plain; charset*=undefined''x\r\n\r\na@b.example\r\n--b--\r\n", "unparseable form"),
])
def test_malformed_bodies(content_type, body, error):
    with pytest.raises(BadWebhook, match=error):
        mailgun.parse(content_type, body)


TS, TOKEN = mailgun.signature_fields(*load("reply_form.http"))[:2]
GOOD = sign(TS, TOKEN)


@pytest.mark.parametrize("key, timestamp, token, signature, now, expected", [
    (SIGNING_KEY, TS, TOKEN, GOOD, int(TS) + 30, None),
    (SIGNING_KEY, TS, TOKEN, GOOD.upper(), int(TS), None),
    (SIGNING_KEY, TS, TOKEN, GOOD, int(TS) + 300, None),  # exactly max_age old is still fresh
    (SIGNING_KEY, TS, TOKEN, GOOD, int(TS) + 301, "stale timestamp: 301 s old"),
    (SIGNING_KEY, TS, TOKEN, GOOD, int(TS) + 86400, "stale timestamp"),
    (SIGNING_KEY, TS, TOKEN, GOOD, int(TS) - 301, "301 s in the future"),
    ("key-the-old-account-api-key", TS, TOKEN, GOOD, int(TS), "bad signature"),
    (SIGNING_KEY, TS, TOKEN + "x", GOOD, int(TS), "bad signature"),
    (SIGNING_KEY, str(int(TS) + 1), TOKEN, GOOD, int(TS), "bad signature"),
    (SIGNING_KEY, TS, TOKEN, "é" + GOOD[1:], int(TS), "bad signature"),
    (SIGNING_KEY, TS, TOKEN, "", int(TS), "missing signature"),
    (SIGNING_KEY, TS, "", GOOD, int(TS), "missing token"),
    (SIGNING_KEY, "", "", "", int(TS), "missing timestamp, token, signature"),
    ("", TS, TOKEN, GOOD, int(TS), "no Mailgun webhook signing key"),
    (SIGNING_KEY, "nan", TOKEN, sign("nan", TOKEN), int(TS), "not a Unix time"),
])
def test_verify_signature(key, timestamp, token, signature, now, expected):
    reason = mailgun.verify_signature(key, timestamp, token, signature, now, 300)
    assert reason == expected if expected is None else expected in reason
