"""Typed values that cross a boundary (webhook -> core, core -> provider, provider -> core)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InboundMessage:
    """A message a person sent us, whatever the channel."""

    channel: str  # sms | email
    provider: str
    provider_message_id: str
    sender: str  # E.164 phone or email address
    recipient: str  # our number / address it was sent to
    body: str
    num_media: int = 0


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's report on a message we sent."""

    provider: str
    provider_message_id: str
    status: str  # relay's delivery status (already mapped from the provider's word)
    provider_status: str
    error_code: str | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """What a sender needs to send one delivery."""

    delivery_id: int
    channel: str
    to: str
    body: str
    raw: bytes | None = field(default=None, repr=False)  # email: the whole RFC 5322 message
    message_id: str = ""  # email: its Message-ID (no brackets)
    # The provider rate limit (relay/infra/ratelimit.py take_slot), as Unix times: no sending slot is booked
    # after send_by; slot_at is the slot this delivery booked when it was deferred.
    send_by: float | None = None
    slot_at: float | None = None
    # WhatsApp outside the 24-hour window (issue 19): a Content API template and its variables (a JSON
    # object as a string), sent instead of the body.
    content_sid: str = ""
    content_variables: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    provider_status: str = "queued"


class SendError(Exception):
    """A failed send. `retryable` says whether trying again later may succeed; `opted_out` that the
    recipient has opted out at the provider (Twilio 21610), which is an opt-out, not a failure to retry.

    `throttled`: nothing was tried, a rate limit said "not now" (relay's own, or a provider's 429 with
    Retry-After): the delivery waits `retry_after` seconds, or until the slot it booked (`slot_at`, a
    Unix time), without that counting as an attempt."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False,
                 opted_out: bool = False, retry_after: float | None = None, throttled: bool = False,
                 slot_at: float | None = None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.opted_out = opted_out
        self.retry_after = retry_after
        self.throttled = throttled
        self.slot_at = slot_at


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class AuthVerdict:
    """One SPF or DKIM result for an inbound email, as its provider (or a trusted receiving server's
    Authentication-Results) reported it. `source` is the provider's name, or "ar:<authserv-id>"."""

    method: str  # spf | dkim
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror, lowercased
    domain: str  # the SPF MAIL FROM domain, or the DKIM d= domain
    source: str


@dataclass(frozen=True)
class InboundEmail:
    """An email a person sent us, as any inbound provider (Mailgun, SendGrid, Postmark) delivers it.

    Addresses are lowercased bare addresses (no display names); Message-IDs have no angle brackets."""

    provider: str  # mailgun | sendgrid | postmark
    provider_message_id: str  # the provider's own id, '' when it has none
    message_id: str  # the RFC 5322 Message-ID, '' when absent
    envelope_from: str  # SMTP MAIL FROM / Return-Path; '' for the null sender <>
    from_address: str
    from_name: str
    recipients: tuple[str, ...]  # envelope / routed recipients first, then To and Cc
    mailbox_hash: str  # the part after '+' of the routed recipient, when the provider gives it
    subject: str
    text: str  # the text/plain body, decoded
    html: str  # the text/html body, decoded
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # every header, in order
    attachments: tuple[Attachment, ...] = ()
    auth: tuple[AuthVerdict, ...] = ()  # the provider's SPF/DKIM verdicts (relay/providers/sender_auth.py)

    def header(self, name: str) -> str | None:
        """The first header called `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None
