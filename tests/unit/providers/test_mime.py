"""relay.providers.mime: raw RFC 5322 messages (tests/data/mime, see SOURCES.md there) and the helpers
the inbound adapters share."""
from __future__ import annotations

import pytest

from relay.providers.errors import BadWebhook
from relay.providers.mime import (
    address_of,
    bare_ids,
    codec_for,
    decode_text,
    email_from_mime,
    envelope_address,
    mailbox_hash_of,
    safe_filename,
)
from tests import paths

DATA = paths.DATA / "mime"
PNG = (DATA / "chest-xray-thumb.png").read_bytes()
THREAD = ("c123.p1.0a9c@relay.example.org", "CAK7bX2m8Qv+3kZ@mail.gmail.com",
          "c123.p2.5f1e@relay.example.org")

JA_TEXT = ("鈴木先生、C123 チームの皆様\n\nご返信ありがとうございます。\n"
           "①右下葉の浸潤影は前回（11/20）より縮小しています。\n②CRP は 3.2 mg/dL まで低下しました。\n"
           "抗菌薬は予定どおり 7 日間で終了とします。\n\n髙橋 明子\n")
KO_TEXT = ("C123 팀 선생님들께,\n\n어제 촬영한 흉부 X선에서 우하엽 경화가 호전되었습니다.\n"
           "보호자 이똠님께는 오늘 오후에 설명드리겠습니다.\n\n김민준 드림\n")
W_TEXT = ("I\u2019d repeat the CT in 6\u20139 weeks \u2013 a 7\u00a0mm solid nodule is \u201clow risk\u201d "
          "under Fleischner, so no PET for now.\n\nRen\u00e9e\n")

SAMPLES = {
    "iso2022jp_reply.eml": dict(
        message_id="TYCP286MB2305A1F0C3D14E9B8A7B2C4DA1@TYCP286MB2305.JPNP286.PROD.OUTLOOK.COM",
        envelope_from="takahashi.akiko@clinic.example.jp", from_address="takahashi.akiko@clinic.example.jp",
        from_name="高橋 明子", recipients=("c123@relay.example.org", "suzuki.h@clinic.example.jp"),
        subject="Re: C123 胸部X線の所見について", text=JA_TEXT, html="",
        in_reply_to=("c123.p2.5f1e@relay.example.org",), references=THREAD, attachments=()),
    "euckr_outlook.eml": dict(
        message_id="000001db4a3f$8e2c1a40$aa844ec0$@hospital.example",
        envelope_from="minjun.kim@hospital.example", from_address="minjun.kim@hospital.example",
        from_name="김민준", recipients=("c123@relay.example.org",), subject="RE: C123 흉부 X선 소견",
        text=KO_TEXT, in_reply_to=("c123.p2.5f1e@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org")),
    "windows1252_qp.eml": dict(
        message_id="DB9PR02MB7211C3E1B2F0A9D4E6B1@DB9PR02MB7211.eurprd02.prod.outlook.com",
        envelope_from="renee.obrien@stmarys.example.ie", from_address="renee.obrien@stmarys.example.ie",
        from_name="Renée O’Brien", recipients=("c123@relay.example.org",), subject="RE: C123 – follow-up CT",
        text=W_TEXT, in_reply_to=("c123.p3.77d0@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org",
                    "c123.p3.77d0@relay.example.org")),
    "image_attachment.eml": dict(
        message_id="CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com",
        envelope_from="sarah.lee@hospital.example", from_address="sarah.lee@hospital.example",
        from_name="Dr. Sarah Lee", recipients=("c123-team@hospital.example", "minjun.kim@hospital.example"),
        subject="Re: C123 chest X-ray — today's film",
        text="Today's film attached: the right lower lobe is clearing.\n\nSarah\n",
        html="<div dir=\"ltr\">Today's film attached: the right lower lobe is clearing.<br><br>Sarah</div>\n"),
    "dsn_bounce.eml": dict(
        message_id="20261127095210.9E0F41A2B4@mx2.hospital.example", envelope_from="",
        from_address="mailer-daemon@mx2.hospital.example", recipients=("relay-bounces+4f1c@relay.example.org",),
        subject="Undelivered Mail Returned to Sender", html="", in_reply_to=(), references=()),
}


def parse_sample(name: str, **kwargs):
    return email_from_mime((DATA / name).read_bytes(), "test", **kwargs)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample(name):
    email = parse_sample(name)
    assert email.provider == "test" and email.provider_message_id == ""
    for field, expected in SAMPLES[name].items():
        assert getattr(email, field) == expected, field
    assert email.headers[0][0] == "Return-Path"  # every header, in order
    assert email.header("message-id") == f"<{email.message_id}>"
    assert "\r" not in email.text + email.html


@pytest.mark.parametrize("name, expected", [
    ("image_attachment.eml", [("흉부X선_C123.png", "image/png", PNG)]),
    ("dsn_bounce.eml", [("", "message/delivery-status", b"Status: 5.1.1"),
                        ("", "text/rfc822-headers", b"Message-ID: <c123.p4.91b2@relay.example.org>")]),
])
def test_attachments(name, expected):
    attachments = parse_sample(name).attachments
    assert [(a.filename, a.content_type) for a in attachments] == [e[:2] for e in expected]
    for attachment, (_, _, content) in zip(attachments, expected):
        assert attachment.content == content or content in attachment.content


def test_envelope_recipients_come_first_deduplicated_and_lowercased():
    email = parse_sample("iso2022jp_reply.eml", envelope_from="<>",
                         recipients=["Reply+8f14e45fceea167a@Relay.example.org", "C123@relay.example.org"])
    assert email.recipients == ("reply+8f14e45fceea167a@relay.example.org", "c123@relay.example.org",
                                "suzuki.h@clinic.example.jp")
    assert email.mailbox_hash == "8f14e45fceea167a"
    assert email.envelope_from == ""


@pytest.mark.parametrize("raw, error", [
    (b"To: c123@relay.example.org\r\nSubject: no sender\r\n\r\nhello\r\n", "no usable From"),
    (b"From: undisclosed-recipients:;\r\n\r\nhello\r\n", "no usable From"),
    (b"", "no usable From"),
])
def test_unusable_messages(raw, error):
    with pytest.raises(BadWebhook, match=error):
        email_from_mime(raw, "test")


def test_nesting_too_deep_for_the_stdlib_parser():
    raw = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    part = b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n"
    raw += b"".join(part % (i, i + 1) for i in range(3000))
    with pytest.raises(BadWebhook, match="nested too deeply"):
        email_from_mime(raw, "test")


def test_multipart_parameters_the_stdlib_cannot_decode():
    raw = (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=XX; x*=punycode''a\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XX--\r\n")
    with pytest.raises(BadWebhook, match="undecodable MIME parameters"):
        email_from_mime(raw, "test")


def test_forwarded_message_is_one_attachment():
    raw = (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
           b"Content-Type: text/plain\r\n\r\nsee below\r\n--XX\r\nContent-Type: message/rfc822\r\n"
           b'Content-Disposition: attachment; filename="lab.eml"\r\n\r\nFrom: lab@x.example\r\n'
           b"Subject: CRP result\r\n\r\nCRP 3.2 mg/dL\r\n--XX--\r\n")
    email = email_from_mime(raw, "test")
    (attachment,) = email.attachments
    assert (email.text, attachment.filename, attachment.content_type) == ("see below", "lab.eml", "message/rfc822")
    assert b"Subject: CRP result" in attachment.content and b"CRP 3.2 mg/dL" in attachment.content


@pytest.mark.parametrize("charset, attachment", [
    ("x-unknown", ("lab report.pdf", "application/pdf")),
    ("base64", ("lab report.pdf", "application/pdf")),
    ("punycode", ("", "application/octet-stream")),  # the stdlib raises on these RFC 2231 parameters
    ("undefined", ("", "application/octet-stream")),
])
def test_hostile_charsets_in_headers_and_parameters(charset, attachment):
    raw = (b"From: a@b.example\r\nSubject: =?%s?q?CRP?=\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain; charset=%s\r\n\r\nhi\r\n--XX\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename*=%s''lab%%20report.pdf\r\n\r\n%%PDF-1.4\r\n--XX--\r\n"
           ) % ((charset.encode(),) * 3)
    email = email_from_mime(raw, "test")
    assert email.text == "hi"
    assert [(a.filename, a.content_type, a.content) for a in email.attachments] == [(*attachment, b"%PDF-1.4")]


def test_envelope_defaults_to_from_without_return_path_and_strips_nul():
    raw = b"From: A <a@b.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx\x00y\r\n"
    email = email_from_mime(raw, "t")
    assert (email.envelope_from, email.text) == ("a@b.example", "xy\n")


@pytest.mark.parametrize("value, expected", [
    ("<a@x>", ("a@x",)),
    ("<c123.p1.0a9c@relay.example.org>\r\n <CAK7bX2m8Qv+3kZ@mail.gmail.com>\r\n\t<c123.p2.5f1e@relay.example.org>",
     THREAD),
    ("<a@x>,<b@y> <a@x>", ("a@x", "b@y")),
    ('<a@x> (Dr Kim\'s message of "Fri, 27 Nov" <not-an-id@y>)', ("a@x",)),
    ('"Kim <kim@x>" <a@x>', ("a@x",)),
    ("a@x b@y", ("a@x", "b@y")),
    ("< a@x >", ("a@x",)),
    ("", ()), (None, ()), ("<>", ()), ("no ids here", ()),
])
def test_bare_ids(value, expected):
    assert bare_ids(value) == expected


@pytest.mark.parametrize("value, expected", [
    ('"Dr. Sarah Lee" <Sarah.Lee@Hospital.example>', ("Dr. Sarah Lee", "sarah.lee@hospital.example")),
    ("=?UTF-8?B?6rmA66+87KSA?= <minjun.kim@hospital.example>", ("김민준", "minjun.kim@hospital.example")),
    ("김민준 <minjun.kim@hospital.example>", ("김민준", "minjun.kim@hospital.example")),
    ("MAILER-DAEMON@mx2.hospital.example (Mail Delivery System)", ("", "mailer-daemon@mx2.hospital.example")),
    ('"Kim, Min-jun" <mj@x.kr>, other@y.example', ("Kim, Min-jun", "mj@x.kr")),
    ("plain@example.org", ("", "plain@example.org")),
    ("<>", ("", "")), ("MAILER-DAEMON", ("", "")), ("undisclosed-recipients:;", ("", "")), ("", ("", "")),
    (None, ("", "")),
])
def test_address_of(value, expected):
    assert address_of(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("<>", ""), ("", ""), (None, ""), ("<Minjun.Kim@Hospital.example>", "minjun.kim@hospital.example"),
    ("sarah.lee@hospital.example", "sarah.lee@hospital.example"), ("MAILER-DAEMON", ""),
])
def test_envelope_address(value, expected):
    assert envelope_address(value) == expected


@pytest.mark.parametrize("values, expected", [
    (["reply+8f14E45@relay.example.org"], "8f14E45"),
    (["c123@relay.example.org", "Reply+Ab+c@relay.example.org"], "Ab+c"),
    (["c123@relay.example.org"], ""), ([], ""),
])
def test_mailbox_hash_of(values, expected):
    assert mailbox_hash_of(values) == expected


@pytest.mark.parametrize("data, charset, expected", [
    ("胸部の所見".encode("iso2022_jp"), "iso-2022-jp", "胸部の所見"),
    (b"\x1b$B-!HV$N|b66\x1b(B", "ISO-2022-JP", "①番の髙橋"),  # CP50220 (Windows) bytes
    ("이똠님".encode("cp949"), "ks_c_5601-1987", "이똠님"),
    ("흉부".encode("euc_kr"), "EUC-KR", "흉부"),
    (b"I\x92d \x96 caf\xe9", "iso-8859-1", "I’d – café"),
    ("café".encode("utf-8"), "us-ascii", "café"),
    ("café".encode("utf-8"), "x-unknown", "café"),
    (b"caf\xe9", "utf-8", "caf\ufffd"),
    (b"caf\xe9", None, "caf\ufffd"),
    (b"aGk=", "base64", "aGk="),  # Python codecs that are not mail charsets are not applied
    (b"uryyb", "rot13", "uryyb"),
    (b"caf\\xe9 ", "unicode_escape", "caf\\xe9 "),
    (b"a b", "punycode", "a b"),
])
def test_decode_text(data, charset, expected):
    assert decode_text(data, charset) == expected


def test_codec_for_supersets():
    declared = ("EUC-KR", "ks_c_5601-1987", "windows-1252", "latin-1", "gb2312", "bogus")
    assert [codec_for(c) for c in declared] == ["cp949", "cp949", "cp1252", "cp1252", "gb18030", "utf-8"]


@pytest.mark.parametrize("name, expected", [
    ("chest.png", "chest.png"), ("C:\\Users\\kim\\흉부.png", "흉부.png"), ("../../etc/passwd", "passwd"),
    ("a\r\nb.txt", "ab.txt"), (None, ""),
])
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected
