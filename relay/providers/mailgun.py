"""Mailgun inbound routes: check the signature, parse a route's forward() POST into an InboundEmail.

A route forward, as Mailgun posts it (application/x-www-form-urlencoded; multipart/form-data with
attachment-1..N when the mail has attachments; shortened, one field a line):

    recipient=reply%2B8f14e45fceea167a%40relay.example.org
    &sender=minjun.kim%40hospital.example
    &from=%EA%B9%80%EB%AF%BC%EC%A4%80+%3Cminjun.kim%40hospital.example%3E
    &subject=Re%3A+C123+%ED%9D%89%EB%B6%80+X%EC%84%A0+%EC%86%8C%EA%B2%AC
    &Message-Id=%3CCAH5mK3b9Zq1rX0%2BTn8vLw7pYd4%40mail.gmail.com%3E&In-Reply-To=...&References=...
    &message-headers=%5B%5B%22Received%22%2C+%22by+luna.mailgun.net+...%22%5D%2C+...%5D
    &timestamp=1795771815&token=c7e1b0a94d5f2e8836a1f0b7c2d9e4a15b8f3c6d0e2a7b9f41
    &signature=<hex HMAC-SHA256 of timestamp+token>
    &body-plain=...&body-html=...&stripped-text=...&stripped-signature=...

A route whose URL ends in `mime` gets `body-mime` (the whole message) instead of the parsed fields.
Threading headers are read from `message-headers` (names in any case), the top-level header fields
only fill gaps. `stripped-text` is ignored: relay strips quotes itself.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re

from relay.model.messages import Attachment, InboundEmail
from relay.providers.errors import BadWebhook
from relay.providers.forms import BadForm, FormPart, fields_of, parse_form
from relay.providers.mime import email_from_mime, inbound_email, safe_filename
from relay.providers.sender_auth import mailgun_verdicts

PROVIDER = "mailgun"
# top-level fields that are copies of headers, used when message-headers lacks them
HEADER_FIELDS = ("from", "to", "cc", "subject", "message-id", "in-reply-to", "references", "return-path")
_TIMESTAMP = re.compile(r"\d{1,12}(\.\d{1,9})?")


def verify_signature(signing_key: str, timestamp: str, token: str, signature: str, now: float,
                     max_age: int) -> str | None:
    """None when `signature` is Mailgun's HMAC-SHA256 (hex) of timestamp+token under the webhook signing
    key and the timestamp is within max_age seconds of now; otherwise why not.

    Token reuse (replay inside the window) must be checked by the caller, which has storage."""
    if not signing_key:
        return "no Mailgun webhook signing key is configured"
    missing = [name for name, value in (("timestamp", timestamp), ("token", token), ("signature", signature))
               if not (value or "").strip()]
    if missing:
        return f"missing {', '.join(missing)}"
    expected = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        return "bad signature"
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        return f"timestamp {timestamp[:20]!r} is not a Unix time"
    age = now - float(timestamp)
    if age > max_age:
        return f"stale timestamp: {age:.0f} s old (limit {max_age} s)"
    if age < -max_age:
        return f"timestamp {-age:.0f} s in the future (limit {max_age} s)"
    return None


def _is_json(content_type: str) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def _form(content_type: str, body: bytes) -> list[FormPart]:
    try:
        return parse_form(content_type, body)
    except BadForm as exc:
        raise BadWebhook(str(exc)) from None


def signature_fields(content_type: str, body: bytes) -> tuple[str, str, str]:
    """(timestamp, token, signature) of a route forward, or of an event webhook's `signature` object
    (so a misdirected event can be authenticated and then refused by parse)."""
    if _is_json(content_type):
        try:
            signature = json.loads(body).get("signature")
        except (ValueError, AttributeError, RecursionError):
            raise BadWebhook("body is not a JSON object") from None
        signature = signature if isinstance(signature, dict) else {}
        timestamp, token, value = (str(signature.get(name) or "") for name in ("timestamp", "token", "signature"))
        return timestamp, token, value
    fields = fields_of(_form(content_type, body))
    return fields.get("timestamp", ""), fields.get("token", ""), fields.get("signature", "")


def _message_headers(fields: dict[str, str]) -> list[tuple[str, str]]:
    """message-headers, then the top-level header fields it lacks (names compared case-insensitively)."""
    pairs: list[tuple[str, str]] = []
    if "message-headers" in fields:
        try:
            raw = json.loads(fields["message-headers"])
        except (ValueError, RecursionError):
            raise BadWebhook("message-headers is not JSON") from None
        if not isinstance(raw, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in raw):
            raise BadWebhook("message-headers is not a JSON list of [name, value] pairs")
        pairs = [(name, value) for name, value in raw]
    present = {name.lower() for name, _ in pairs}
    for name, value in fields.items():
        if name.lower() in HEADER_FIELDS and name.lower() not in present and name[0].isupper():
            pairs.append((name, value))
            present.add(name.lower())
    return pairs


def _attachments(parts: list[FormPart]) -> list[Attachment]:
    files = [(int(p.name[11:]), p) for p in parts
             if p.filename is not None and re.fullmatch(r"attachment-\d{1,4}", p.name)]
    files.sort(key=lambda item: item[0])
    return [Attachment(safe_filename(p.filename), p.content_type, p.data) for _, p in files]


def parse(content_type: str, body: bytes) -> InboundEmail:
    """The email in a route forward() POST (parsed fields or, for a `mime` URL, body-mime)."""
    if _is_json(content_type):
        raise BadWebhook("a JSON body is a Mailgun event webhook, not a route forward(): check the route URL")
    parts = _form(content_type, body)
    fields = fields_of(parts)  # Mailgun posts every parsed field in UTF-8
    recipients = [r.strip() for r in fields.get("recipient", "").split(",") if r.strip()]
    envelope_from = fields.get("sender")
    raw = next((p.data for p in parts if p.name == "body-mime"), None)
    if raw is not None:
        email = email_from_mime(raw, PROVIDER, envelope_from=envelope_from, recipients=recipients)
    else:
        email = inbound_email(
            provider=PROVIDER, headers=_message_headers(fields), envelope_from=envelope_from,
            recipients=recipients, from_value=fields.get("from") or None, subject=fields.get("subject"),
            text=fields.get("body-plain", ""), html=fields.get("body-html", ""), attachments=_attachments(parts))
    # Mailgun's verdicts, also posted as top-level fields (sender_auth checks that every copy agrees)
    verdict_headers = list(email.headers) + [(n, v) for n, v in fields.items() if n.lower().startswith("x-mailgun-")]
    return dataclasses.replace(email, auth=mailgun_verdicts(verdict_headers, email.envelope_from))
