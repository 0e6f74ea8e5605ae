"""One log format for every process: time, level, logger, message (one line per event) — and the
helpers that keep members' addresses, numbers and secret tokens out of it (docs/privacy.md)."""
from __future__ import annotations

import logging
import os
import re
from urllib.parse import unquote

REDACTED = "[redacted]"

# an address or an E.164 number inside free text (an error message, a provider's reason)
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE_IN_TEXT = re.compile(r"\+\d{7,15}\b")
# a path segment that is a phone number: +<digits>, or a bare run of 7 to 15 digits
_PHONE = re.compile(r"\+?\d{7,15}")
# one piece of an opaque token: 16 or more letters and digits with at least one of each, or 20 or
# more letters in both cases (base64); slugs (lower-case words and years) do not match
_TOKEN_PIECE = re.compile(r"(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}"
                          r"|(?=[A-Za-z]*[a-z])(?=[A-Za-z]*[A-Z])[A-Za-z]{20,}")
# the segment after one of these is a signed token (/unsubscribe/<token>, /digest/confirm/<token>, ...)
TOKEN_PARENTS = frozenset({"p", "u", "unsubscribe", "preferences", "confirm", "token", "tokens", "verify",
                           "reset", "invite", "bounce",
                           "ack", "gather"})  # issue 17: /ack/<token>, /webhooks/twilio/voice/gather/<token>
# query parameters whose value is never logged
SECRET_PARAMS = frozenset({"token", "key", "secret", "signature", "sig", "password", "code", "auth", "api_key",
                           "apikey", "access_token", "session", "email", "phone", "to", "from", "sender"})


def mask(value: object) -> str:
    """An email address or phone number as the logs show it: ``j***@example.org``, ``+447…23``."""
    text = str(value or "").strip()
    if "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return text[:4] + "…" + text[-2:] if len(text) > 8 else "…"


def mask_text(text: object) -> str:
    """Free text (an error, a reason) with every email address and E.164 number in it masked."""
    masked = _EMAIL_IN_TEXT.sub(lambda m: mask(m.group(0)), str(text))
    return _PHONE_IN_TEXT.sub(lambda m: mask(m.group(0)), masked)


def _secret_value(value: str) -> str | None:
    """What to log instead of one path segment or query value, or None when it may be logged as is."""
    if len(value) < 6:  # too short for a number (7 digits), a token (16) or an address (a@b.io)
        return None
    plain = unquote(value) if "%" in value else value
    if "@" in plain:
        return mask(plain)
    if _PHONE.fullmatch(plain):
        return mask(plain)
    if any(_TOKEN_PIECE.fullmatch(piece) for piece in re.split(r"[-_.~=:+/]", plain)):
        return REDACTED
    return None


def redact_path(path: str) -> str:
    """A request path or URI safe to log: signed tokens, secrets in the path (SendGrid's), phone numbers
    and addresses replaced; everything else (the route, ids, slugs) kept."""
    if not path:
        return path
    path, mark, query = path.partition("?")
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if not segment:
            continue
        parent = segments[index - 1].lower() if index else ""
        if parent in TOKEN_PARENTS or _is_email_webhook_secret(segments, index):
            segments[index] = REDACTED
        else:
            segments[index] = _secret_value(segment) or segment
    redacted = "/".join(segments)
    return f"{redacted}?{redact_query(query)}" if mark else redacted


def _is_email_webhook_secret(segments: list[str], index: int) -> bool:
    """/webhooks/email/<provider>/<secret>: SendGrid's shared secret travels in the path."""
    return index >= 4 and [s.lower() for s in segments[index - 3:index - 1]] == ["webhooks", "email"]


def redact_query(query: str) -> str:
    """A query string safe to log: secret parameters and any value that looks like a token, phone
    number or address replaced."""
    if not query:
        return query
    parts = []
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if eq and value:
            if unquote(key).lower() in SECRET_PARAMS:
                value = REDACTED
            elif unquote(value).startswith("/"):  # a local URL (?next=/preferences/<token>)
                value = redact_path(unquote(value))
            else:
                value = _secret_value(value) or value
        parts.append(f"{key}{eq}{value}")
    return "&".join(parts)


def configure_logging() -> None:
    root = logging.getLogger()
    if getattr(root, "_relay_configured", False):
        return
    level = os.environ.get("RELAY_LOG_LEVEL", "INFO").upper()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level if level in logging._nameToLevel else "INFO")
    # twilio's HTTP client logs every request's URL and headers at INFO: noise, and it names the account.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    logging.getLogger("flufl.bounce").setLevel(logging.WARNING)  # one INFO line per detector per bounce
    root._relay_configured = True  # type: ignore[attr-defined]
