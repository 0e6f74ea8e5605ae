"""SendGrid Inbound Parse: check the shared secret, parse the multipart POST into an InboundEmail.

The POST, as SendGrid sends it (multipart/form-data; boundary=xYzZY; text fields in the charset
`charsets` names for them, not necessarily UTF-8; shortened):

    --xYzZY
    Content-Disposition: form-data; name="headers"

    Received: from mail.hospital.example ... for <reply+8f14e45fceea167a@relay.example.org>; ...
    From: =?euc-kr?b?sei5zsHY?= <minjun.kim@hospital.example>
    Message-ID: <20261127184137.4B2E@hospital.example>
    In-Reply-To: <c123.p2.5f1e@relay.example.org>
    References: <c123.p1.0a9c@relay.example.org>
    	<CAK7bX2m8Qv+3kZ@mail.gmail.com>
    	<c123.p2.5f1e@relay.example.org>
    --xYzZY
    Content-Disposition: form-data; name="text"

    <the text/plain body, in EUC-KR here>
    --xYzZY
    Content-Disposition: form-data; name="envelope"

    {"to":["reply+8f14e45fceea167a@relay.example.org"],"from":"minjun.kim@hospital.example"}
    --xYzZY
    Content-Disposition: form-data; name="charsets"

    {"to":"UTF-8","html":"EUC-KR","subject":"UTF-8","from":"UTF-8","text":"EUC-KR"}
    --xYzZY--

Also: to, cc, from, subject, html, dkim, SPF, sender_ip, spam_score, attachments (a count),
attachment-info (JSON keyed attachment1..N) and the files attachment1..N. In raw mode the field
`email` holds the whole MIME message instead of headers/text/html/attachments. Recipients come from
`envelope` (the SMTP RCPT TO list), which carries the reply address even when To does not.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import re
from email import policy
from email.parser import BytesHeaderParser

from relay.model.messages import Attachment, InboundEmail
from relay.providers.errors import BadWebhook
from relay.providers.forms import BadForm, FormPart, fields_of, parse_form
from relay.providers.mime import codec_for, email_from_mime, inbound_email, safe_filename
from relay.providers.sender_auth import sendgrid_verdicts

PROVIDER = "sendgrid"


def verify(secret: str, basic_auth_password: str | None, path_token: str | None) -> bool:
    """True when the configured secret came as the Basic-auth password or as the URL path token.

    Both are compared in constant time; an unset secret never verifies."""
    if not secret:
        return False
    expected = secret.encode("utf-8")
    matches = [hmac.compare_digest(expected, (given or "").encode("utf-8", "replace"))
               for given in (basic_auth_password, path_token)]
    return any(matches)


def _json_field(fields: dict[str, str], name: str, kind: type):
    try:
        value = json.loads(fields[name])
    except (ValueError, RecursionError):
        raise BadWebhook(f"{name} is not JSON") from None
    if not isinstance(value, kind):
        raise BadWebhook(f"{name} is not a JSON {kind.__name__}")
    return value


def _charsets(fields: dict[str, str]) -> dict[str, str]:
    """The `charsets` map with each charset replaced by the codec that really decodes it (EUC-KR is
    read as its superset cp949, and so on). Missing or malformed: {} (everything read as UTF-8)."""
    try:
        declared = json.loads(fields.get("charsets") or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(declared, dict):
        return {}
    return {str(name): codec_for(str(charset)) for name, charset in declared.items()}


def _envelope(fields: dict[str, str]) -> tuple[str | None, list[str]]:
    if "envelope" not in fields:
        raise BadWebhook("missing field envelope")
    envelope = _json_field(fields, "envelope", dict)
    to = envelope.get("to") or []
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(item, str) for item in to):
        raise BadWebhook("envelope.to is not a list of addresses")
    sender = envelope.get("from")
    return (sender if isinstance(sender, str) else None), to


def _attachments(parts: list[FormPart], fields: dict[str, str]) -> list[Attachment]:
    try:
        info = json.loads(fields.get("attachment-info") or "{}")
    except (ValueError, RecursionError):
        info = {}
    info = info if isinstance(info, dict) else {}
    files = sorted((int(p.name[10:]), p) for p in parts
                   if p.filename is not None and re.fullmatch(r"attachment\d{1,4}", p.name))
    attachments = []
    for _, part in files:
        meta = info.get(part.name)
        meta = meta if isinstance(meta, dict) else {}
        filename = part.filename or meta.get("filename") or meta.get("name") or ""
        content_type = str(meta.get("type") or part.content_type or "application/octet-stream")
        attachments.append(Attachment(safe_filename(str(filename)), content_type, part.data))
    return attachments


def parse(content_type: str, body: bytes) -> InboundEmail:
    """The email in an Inbound Parse POST (parsed or raw mode)."""
    try:
        parts = parse_form(content_type, body)
    except BadForm as exc:
        raise BadWebhook(str(exc)) from None
    fields = fields_of(parts, _charsets(fields_of(parts)))
    envelope_from, recipients = _envelope(fields)
    raw = next((p.data for p in parts if p.name == "email" and p.filename is None), None)
    if raw is not None:
        email = email_from_mime(raw, PROVIDER, envelope_from=envelope_from, recipients=recipients)
    else:
        block = next((p.data for p in parts if p.name == "headers"), b"")
        headers = list(BytesHeaderParser(policy=policy.default).parsebytes(block.lstrip(b"\r\n")).raw_items())
        header_recipients = [fields["to"], fields.get("cc")] if "to" in fields else None
        email = inbound_email(
            provider=PROVIDER, headers=headers, envelope_from=envelope_from, recipients=recipients,
            from_value=fields.get("from") or None, header_recipients=header_recipients,
            subject=fields.get("subject"), text=fields.get("text", ""), html=fields.get("html", ""),
            attachments=_attachments(parts, fields))
    auth = sendgrid_verdicts(fields.get("SPF", ""), fields.get("dkim", ""), email.envelope_from, email.headers)
    return dataclasses.replace(email, auth=auth)
