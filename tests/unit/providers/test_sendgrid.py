"""relay.providers.sendgrid against Inbound Parse POSTs (tests/data/sendgrid, see SOURCES.md there)."""
from __future__ import annotations

import re

import pytest

from relay.providers import sendgrid
from relay.providers.errors import BadWebhook
from relay.providers.forms import parse_form
from tests import paths

DATA = paths.DATA / "sendgrid"
PNG = (DATA.parent / "mime" / "chest-xray-thumb.png").read_bytes()
REPLY = "reply+8f14e45fceea167a@relay.example.org"
KO_TEXT = ("선생님들께,\n\nC123 환자 흉부 X선 재검 결과 공유드립니다.\n우하엽 경화는 호전되었고 흉수는 보이지 않습니다.\n"
           "항생제는 예정대로 7일 후 종료하겠습니다.\n\n김민준 드림\n")


def load(name: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a stored POST: a short header block, a blank line, the body bytes."""
    head, body = (DATA / name).read_bytes().split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode("ascii").split("\r\n"))
    return headers["Content-Type"], body


VALID = {
    "euckr_parsed.http": dict(
        message_id="20261127184137.4B2E@hospital.example", envelope_from="minjun.kim@hospital.example",
        from_address="minjun.kim@hospital.example", from_name="김민준",
        recipients=(REPLY, "c123-team@hospital.example"), mailbox_hash="8f14e45fceea167a",
        subject="Re: C123 흉부 X선 재검", text=KO_TEXT,
        html="<div>선생님들께,</div><div>C123 환자 흉부 X선 재검 결과 공유드립니다.</div><div>김민준 드림</div>\n",
        in_reply_to=("c123.p2.5f1e@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "CAK7bX2m8Qv+3kZ@mail.gmail.com",
                    "c123.p2.5f1e@relay.example.org"), attachments=()),
    "attachment_parsed.http": dict(
        message_id="CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com", envelope_from="sarah.lee@hospital.example",
        from_address="sarah.lee@hospital.example", from_name="Dr. Sarah Lee",
        recipients=(REPLY, "c123-team@hospital.example", "minjun.kim@hospital.example",
                    "takahashi.akiko@clinic.example.jp"),
        subject="Re: C123 chest X-ray", text="Today's film attached: the right lower lobe is clearing.\n\nSarah\n",
        in_reply_to=("CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org",
                    "CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com")),
    "raw_mode.http": dict(
        message_id="CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com", envelope_from="sarah.lee@hospital.example",
        from_address="sarah.lee@hospital.example", from_name="Dr. Sarah Lee",
        recipients=(REPLY, "c123-team@hospital.example", "minjun.kim@hospital.example"),
        mailbox_hash="8f14e45fceea167a", subject="Re: C123 chest X-ray — today's film",
        in_reply_to=("c123.p2.5f1e@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org")),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_parse(name):
    email = sendgrid.parse(*load(name))
    assert (email.provider, email.provider_message_id) == ("sendgrid", "")
    for field, expected in VALID[name].items():
        assert getattr(email, field) == expected, field
    assert REPLY not in (email.header("To") or "")  # the reply address is only in the envelope


def test_the_korean_fields_really_are_euc_kr_on_the_wire():
    parts = {p.name: p for p in parse_form(*load("euckr_parsed.http"))}
    with pytest.raises(UnicodeDecodeError):
        parts["text"].data.decode("utf-8")
    assert parts["text"].data.decode("euc-kr").replace("\r\n", "\n") == KO_TEXT


def test_charsets_are_honoured_per_field():
    content_type, body = load("euckr_parsed.http")
    relabelled = body.replace(b'"text":"EUC-KR"', b'"text":"UTF-8"')
    assert sendgrid.parse(content_type, body).text == KO_TEXT
    assert "\ufffd" in sendgrid.parse(content_type, relabelled).text  # a wrong label: U+FFFD, no crash


def test_threading_headers_come_from_the_raw_headers_block():
    email = sendgrid.parse(*load("euckr_parsed.http"))
    assert email.header("References") == ("<c123.p1.0a9c@relay.example.org>\t<CAK7bX2m8Qv+3kZ@mail.gmail.com>"
                                          "\t<c123.p2.5f1e@relay.example.org>")
    assert email.header("Subject") == "Re: C123 흉부 X선 재검"  # RFC 2047 (EUC-KR) decoded
    assert email.header("X-Mailer") == "Daou Office Mail"


@pytest.mark.parametrize("name, expected", [
    ("attachment_parsed.http", ("chest-xray-thumb.png", "image/png")),
    ("raw_mode.http", ("흉부X선_C123.png", "image/png")),
])
def test_attachment(name, expected):
    (attachment,) = sendgrid.parse(*load(name)).attachments
    assert (attachment.filename, attachment.content_type, attachment.content) == (*expected, PNG)


def _with_envelope(envelope: str) -> tuple[str, bytes]:
    content_type, body = load("attachment_parsed.http")
    field = rb'(name="envelope"\r\n\r\n)[^\r]*'
    return content_type, re.sub(field, lambda m: m.group(1) + envelope.encode(), body)


@pytest.mark.parametrize("envelope, envelope_from, recipients", [
    ('{"to":["Reply+8f14e45fceea167a@Relay.example.org","c123@relay.example.org"],"from":""}', "",
     (REPLY, "c123@relay.example.org", "c123-team@hospital.example")),
    ('{"to":"reply+8f14e45fceea167a@relay.example.org","from":"<>"}', "", (REPLY, "c123-team@hospital.example")),
    ('{"to":[]}', "sarah.lee@hospital.example", ("c123-team@hospital.example",)),  # no from: From address
])
def test_envelope(envelope, envelope_from, recipients):
    email = sendgrid.parse(*_with_envelope(envelope))
    assert email.envelope_from == envelope_from
    assert email.recipients[:len(recipients)] == recipients


@pytest.mark.parametrize("payload, error", [
    (load("bad_envelope.http"), "envelope is not JSON"),
    (load("missing_from.http"), "no usable From"),
    (_with_envelope('["reply+8f14e45fceea167a@relay.example.org"]'), "envelope is not a JSON dict"),
    (_with_envelope('{"to":[1,2]}'), "envelope.to is not a list"),
    (("multipart/form-data; boundary=xYzZY", b'--xYzZY\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
      b"hi\r\n--xYzZY--\r\n"), "missing field envelope"),
    (("application/json", b'{"envelope": {}}'), "expected a form"),
    (("multipart/form-data", b"--xYzZY--"), "without a boundary"),
    (("multipart/form-data; boundary=xYzZY", b'--xYzZY\r\nContent-Disposition: form-data; name="text"\r\n'
      b"Content-Type: text/plain; charset*=punycode''x\r\n\r\nhi\r\n--xYzZY--\r\n"), "unparseable form"),
])
def test_unusable_payloads(payload, error):
    with pytest.raises(BadWebhook, match=error):
        sendgrid.parse(*payload)


@pytest.mark.parametrize("secret, password, token, expected", [
    ("s3cret-7f2a", "s3cret-7f2a", None, True),
    ("s3cret-7f2a", None, "s3cret-7f2a", True),
    ("s3cret-7f2a", "wrong", "s3cret-7f2a", True),
    ("s3cret-7f2a", "wrong", "also-wrong", False),
    ("s3cret-7f2a", "s3cret-7f2", None, False),
    ("s3cret-7f2a", "", "", False),
    ("s3cret-7f2a", "sécret", None, False),
    ("", "", "", False),
    ("", None, None, False),
])
def test_verify(secret, password, token, expected):
    assert sendgrid.verify(secret, password, token) is expected
