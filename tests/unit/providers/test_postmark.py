"""relay.providers.postmark against inbound webhook POSTs (tests/data/postmark, see SOURCES.md there)."""
from __future__ import annotations

import json

import pytest

from relay.providers import postmark
from relay.providers.errors import BadWebhook
from tests import paths

DATA = paths.DATA / "postmark"
PNG = (DATA.parent / "mime" / "chest-xray-thumb.png").read_bytes()
REPLY = "reply+8f14e45fceea167a@relay.example.org"
W_TEXT = ("I\u2019d repeat the CT in 6\u20139 weeks \u2013 a 7\u00a0mm solid nodule is \u201clow risk\u201d "
          "under Fleischner, so no PET for now.\n\nRen\u00e9e\n")

VALID = {
    "reply_with_image.json": dict(
        provider_message_id="a8c1f0d2-6e3b-4c59-9f7e-2b1d4e8a6c30",
        message_id="CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com", envelope_from="sarah.lee@hospital.example",
        from_address="sarah.lee@hospital.example", from_name="Dr. Sarah Lee",
        recipients=(REPLY, "c123-team@hospital.example", "minjun.kim@hospital.example"),
        mailbox_hash="8f14e45fceea167a", subject="Re: C123 chest X-ray",
        text=("Today's film attached: the right lower lobe is clearing.\n\nSarah\n\n"
              "On Fri, 27 Nov 2026 at 09:30, C123 discussion wrote:\n> Kim Min-jun: antibiotics stop on day 7.\n"),
        html="<div dir=\"ltr\">Today's film attached: the right lower lobe is clearing.<br><br>Sarah</div>\n",
        in_reply_to=("c123.p3.77d0@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "CAH5mK3b9Zq1rX0+Tn8vLw7pYd4@mail.gmail.com",
                    "c123.p3.77d0@relay.example.org")),
    "bounce_null_sender.json": dict(
        provider_message_id="0c5b7e19-3f2a-4d8e-b1c6-9a4f2e7d3b58",
        message_id="20261127095210.9E0F41A2B4@mx2.hospital.example", envelope_from="",
        from_address="mailer-daemon@mx2.hospital.example", from_name="Mail Delivery System",
        recipients=("relay-bounces+4f1c@relay.example.org",), mailbox_hash="4f1c",
        subject="Undelivered Mail Returned to Sender", html="", in_reply_to=(), references=()),
    "raw_email.json": dict(
        provider_message_id="5e9d2c71-0b4a-4f3e-8d6c-1a7b3e9f2d40",
        message_id="DB9PR02MB7211C3E1B2F0A9D4E6B1@DB9PR02MB7211.eurprd02.prod.outlook.com",
        envelope_from="renee.obrien@stmarys.example.ie", from_address="renee.obrien@stmarys.example.ie",
        from_name="Renée O’Brien", recipients=(REPLY, "c123@relay.example.org"), mailbox_hash="8f14e45fceea167a",
        subject="RE: C123 – follow-up CT", text=W_TEXT, in_reply_to=("c123.p3.77d0@relay.example.org",),
        references=("c123.p1.0a9c@relay.example.org", "c123.p2.5f1e@relay.example.org",
                    "c123.p3.77d0@relay.example.org"), attachments=()),
}


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.mark.parametrize("name", sorted(VALID))
def test_parse(name):
    email = postmark.parse(load(name))
    assert email.provider == "postmark"
    for field, expected in VALID[name].items():
        assert getattr(email, field) == expected, field
    payload = json.loads(load(name))
    assert payload["MessageID"] != email.message_id  # Postmark's id is not the RFC Message-ID
    assert REPLY not in payload["To"]  # the reply address is only in OriginalRecipient / BccFull


def test_attachments():
    (image,) = postmark.parse(load("reply_with_image.json")).attachments
    assert (image.filename, image.content_type, image.content) == ("chest-xray-thumb.png", "image/png", PNG)
    (report,) = postmark.parse(load("bounce_null_sender.json")).attachments
    assert report.content_type == "message/delivery-status" and b"Status: 5.1.1" in report.content


def test_headers_are_postmarks_list_in_order():
    email = postmark.parse(load("reply_with_image.json"))
    assert [name for name, _ in email.headers][:3] == ["Return-Path", "Received", "X-Spam-Checker-Version"]
    assert email.header("x-spam-status") == "No"


def _edited(name: str, **changes) -> bytes:
    payload = json.loads(load(name))
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize("changes, field, expected", [
    ({"MailboxHash": ""}, "mailbox_hash", "8f14e45fceea167a"),  # from OriginalRecipient
    ({"FromFull": None}, "from_address", "sarah.lee@hospital.example"),  # plain From
    ({"Headers": [{"Name": "Message-ID", "Value": "<x@y>"}]}, "envelope_from", "sarah.lee@hospital.example"),
    ({"Headers": [{"Name": "Return-Path", "Value": "<>"}, {"Name": "Return-Path", "Value": "<fake@x>"}]},
     "envelope_from", ""),  # Postmark's own Return-Path is the first
    ({"ToFull": None, "CcFull": None}, "recipients",
     (REPLY, "c123-team@hospital.example", "minjun.kim@hospital.example")),  # the To / Cc strings
])
def test_field_fallbacks(changes, field, expected):
    assert getattr(postmark.parse(_edited("reply_with_image.json", **changes)), field) == expected


def test_check_button_payload_says_data_not_content():
    body = _edited("reply_with_image.json",
                   Attachments=[{"Name": "../x-ray.png", "Data": "iVBORw0KGgo=", "ContentType": "image/png"}])
    (attachment,) = postmark.parse(body).attachments
    assert (attachment.filename, attachment.content) == ("x-ray.png", b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("body, error", [
    (load("not_json.txt"), "body is not JSON"),
    (b"\xff\xfe{", "body is not JSON"),
    (b'["FromFull"]', "not a JSON object"),
    (load("missing_from.json"), "missing FromFull.Email"),
    (load("bad_attachment.json"), "attachment 1 \\('chest-xray-thumb.png'\\): Content is not base64"),
    (load("delivery_webhook.json"), "Postmark Delivery webhook"),
    (_edited("reply_with_image.json", Headers={"Message-ID": "<x@y>"}), "Headers is not a list"),
    (_edited("reply_with_image.json", Attachments="none"), "Attachments is not a list"),
    (_edited("reply_with_image.json", FromFull={"Email": "not an address"}, From=None), "no usable From"),
])
def test_unusable_payloads(body, error):
    with pytest.raises(BadWebhook, match=error):
        postmark.parse(body)


@pytest.mark.parametrize("user, password, given_user, given_password, expected", [
    ("relay", "pm-9c2e", "relay", "pm-9c2e", True),
    ("relay", "pm-9c2e", "relay", "pm-9c2f", False),
    ("relay", "pm-9c2e", "Relay", "pm-9c2e", False),
    ("relay", "pm-9c2e", None, None, False),
    ("relay", "pm-9c2e", "relay", "pm-9c2é", False),
    ("", "", "", "", False),
    ("relay", "", "relay", "", False),
])
def test_verify(user, password, given_user, given_password, expected):
    assert postmark.verify(user, password, given_user, given_password) is expected
