"""Postmark inbound webhook: check the Basic-auth credentials, parse the JSON POST into an InboundEmail.

The POST, as Postmark sends it (application/json, User-Agent Postmark; shortened):

    {"FromName": "Dr. Sarah Lee", "MessageStream": "inbound", "From": "Sarah.Lee@hospital.example",
     "FromFull": {"Email": "Sarah.Lee@hospital.example", "Name": "Dr. Sarah Lee", "MailboxHash": ""},
     "To": "\\"C123 Team\\" <c123-team@hospital.example>",
     "ToFull": [{"Email": "c123-team@hospital.example", "Name": "C123 Team", "MailboxHash": ""}],
     "Cc": "", "CcFull": [], "BccFull": [{"Email": "reply+8f14e45fceea167a@relay.example.org", ...}],
     "OriginalRecipient": "reply+8f14e45fceea167a@relay.example.org", "MailboxHash": "8f14e45fceea167a",
     "Subject": "Re: C123 chest X-ray", "MessageID": "a8c1f0d2-6e3b-4c59-9f7e-2b1d4e8a6c30",
     "Date": "Fri, 27 Nov 2026 09:47:21 +0000", "TextBody": "...", "HtmlBody": "...",
     "StrippedTextReply": "...", "Tag": "",
     "Headers": [{"Name": "Return-Path", "Value": "<Sarah.Lee@hospital.example>"},
                 {"Name": "X-Spam-Status", "Value": "No"},
                 {"Name": "Message-ID", "Value": "<CAJ4nR0fZ2qv7Hc+XkD9Lw3tUuYp=Sm1aQ@mail.gmail.com>"},
                 {"Name": "In-Reply-To", "Value": "<c123.p3.77d0@relay.example.org>"}, ...],
     "Attachments": [{"Name": "chest-xray-thumb.png", "Content": "iVBORw0KGgo...",
                      "ContentType": "image/png", "ContentLength": 239, "ContentID": ""}]}

MessageID is Postmark's own id (provider_message_id); the RFC Message-ID, In-Reply-To, References and
Return-Path (the envelope sender) are in Headers, which omits From, To, Cc, Subject and Date.
With "include raw email" on, RawEmail holds the whole message and is parsed instead of the fields.
StrippedTextReply is ignored: relay strips quotes itself.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json

from relay.model.messages import Attachment, InboundEmail
from relay.providers.errors import BadWebhook
from relay.providers.mime import email_from_mime, first_header, inbound_email, mailbox_hash_of, safe_filename
from relay.providers.sender_auth import postmark_verdicts

PROVIDER = "postmark"


def verify(user: str, password: str, given_user: str | None, given_password: str | None) -> bool:
    """True when the Basic-auth credentials match the configured ones (constant time; unset never does)."""
    if not user or not password:
        return False
    user_ok = hmac.compare_digest(user.encode(), (given_user or "").encode("utf-8", "replace"))
    password_ok = hmac.compare_digest(password.encode(), (given_password or "").encode("utf-8", "replace"))
    return user_ok & password_ok


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _emails(data: dict, name: str) -> list[str]:
    """The Email of each entry of a ToFull / CcFull / BccFull list."""
    entries = data.get(name)
    if not isinstance(entries, list):
        return []
    return [e["Email"] for e in entries if isinstance(e, dict) and isinstance(e.get("Email"), str)]


def _headers(data: dict) -> list[tuple[str, str]]:
    entries = data.get("Headers") or []
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("Name"), str) and isinstance(e.get("Value", ""), str)
            for e in entries):
        raise BadWebhook("Headers is not a list of {Name, Value} objects")
    return [(e["Name"], e.get("Value", "")) for e in entries]


def _attachments(data: dict) -> list[Attachment]:
    entries = data.get("Attachments") or []
    if not isinstance(entries, list):
        raise BadWebhook("Attachments is not a list")
    attachments = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise BadWebhook(f"attachment {index} is not an object")
        content = entry.get("Content", entry.get("Data"))  # Postmark's "Check" test payload says Data
        try:
            payload = base64.b64decode("".join(str(content or "").split()), validate=True)
        except (binascii.Error, ValueError):
            name = _text(entry, "Name")[:60]
            raise BadWebhook(f"attachment {index} ({name!r}): Content is not base64") from None
        attachments.append(Attachment(safe_filename(_text(entry, "Name")),
                                      _text(entry, "ContentType") or "application/octet-stream", payload))
    return attachments


def parse(body: bytes) -> InboundEmail:
    """The email in an inbound webhook POST body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadWebhook("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadWebhook("body is not a JSON object")
    record_type = _text(data, "RecordType")
    if record_type and record_type != "Inbound":
        raise BadWebhook(f"this is a Postmark {record_type} webhook, not an inbound one: check its URL")
    headers = _headers(data)
    return_path = first_header(headers, "Return-Path")  # the first: Postmark's own, from the SMTP envelope
    recipients = [_text(data, "OriginalRecipient")] + _emails(data, "BccFull")
    mailbox_hash = _text(data, "MailboxHash") or mailbox_hash_of(recipients)
    message_id = _text(data, "MessageID")
    raw = data.get("RawEmail")
    if isinstance(raw, str) and raw.strip():
        email = email_from_mime(raw.encode("utf-8", "surrogatepass"), PROVIDER, message_id,
                                envelope_from=return_path, recipients=recipients)
        return dataclasses.replace(email, mailbox_hash=mailbox_hash or email.mailbox_hash,
                                   auth=postmark_verdicts(headers, email.envelope_from, email.from_address))
    sender = data.get("FromFull")
    sender = sender if isinstance(sender, dict) else {}
    from_email = _text(sender, "Email") or _text(data, "From")
    if not from_email.strip():
        raise BadWebhook("missing FromFull.Email (the message has no From address)")
    header_recipients = (_emails(data, "ToFull") + _emails(data, "CcFull")
                         if "ToFull" in data or "CcFull" in data else [_text(data, "To"), _text(data, "Cc")])
    email = inbound_email(
        provider=PROVIDER, provider_message_id=message_id, headers=headers,
        envelope_from=return_path, recipients=recipients,
        sender=(_text(sender, "Name") or _text(data, "FromName"), from_email),
        header_recipients=header_recipients, subject=_text(data, "Subject"), mailbox_hash=mailbox_hash,
        text=_text(data, "TextBody"), html=_text(data, "HtmlBody"), attachments=_attachments(data))
    return dataclasses.replace(email, auth=postmark_verdicts(headers, email.envelope_from, email.from_address))
