"""VERP: the envelope sender and the signed X-Relay-Delivery header every email relay sends carries.

Made here, at the senders (relay/providers/smtp_email.py stamps every message), and read back by
relay/inbound/bounce_proof.py, which decides what a returned report proves. The token is the delivery
id signed with RELAY_SECRET_KEY (relay.infra.signing.signed_id, purpose "bounce")."""
from __future__ import annotations

from email.utils import parseaddr

from relay.infra.signing import read_signed_id, signed_id

BOUNCE_LOCAL = "bounce"
DELIVERY_HEADER = "X-Relay-Delivery"
_PURPOSE = "bounce"


def bounce_token(secret: str, delivery_id: int) -> str:
    """`<delivery id>-<signature>`: lowercase letters and digits, safe in a local part."""
    return signed_id(secret, _PURPOSE, delivery_id)


def bounce_address(settings, delivery_id: int) -> str:
    """The VERP envelope sender of one delivery: bounce+<token>@<RELAY_MAIL_DOMAIN>."""
    return f"{BOUNCE_LOCAL}+{bounce_token(settings.secret(), delivery_id)}@{settings.email_domain}"


def stamp(settings, delivery_id: int, raw: bytes) -> tuple[str, bytes]:
    """(envelope sender, message) for sending one delivery: the VERP address, and the message with the
    delivery's signed token in DELIVERY_HEADER (prepended: header order carries no meaning here)."""
    token = bounce_token(settings.secret(), delivery_id)
    newline = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    return (f"{BOUNCE_LOCAL}+{token}@{settings.email_domain}",
            f"{DELIVERY_HEADER}: {token}".encode() + newline + raw)


def is_bounce_address(settings, address: str) -> bool:
    """True for any address of the form bounce+...@<our domain>, signed well or not."""
    local, _, host = (parseaddr(address)[1] or address).strip().lower().rpartition("@")
    return host == settings.email_domain.lower() and local.startswith(BOUNCE_LOCAL + "+")


def read_bounce_token(secret: str, token: str) -> int | None:
    """The delivery id a bounce token was signed for, or None when its signature is wrong."""
    return read_signed_id(secret, _PURPOSE, token)
