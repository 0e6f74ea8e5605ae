"""Typed values that cross a boundary (webhook -> core, core -> provider, provider -> core)."""
from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    provider_status: str = "queued"


class SendError(Exception):
    """A failed send. `retryable` says whether trying again later may succeed; `opted_out` that the
    recipient has opted out at the provider (Twilio 21610), which is an opt-out, not a failure to retry."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False,
                 opted_out: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.opted_out = opted_out
        self.retry_after = retry_after
