"""One small module per provider. The registry of senders is an explicit dict, chosen by settings."""
from __future__ import annotations

from typing import Protocol

from ..messages import OutboundMessage, SendResult


class Sender(Protocol):
    """Sends one message; raises relay.messages.SendError (typed: retryable or not) on failure."""

    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...


def sms_sender_for(settings) -> Sender:
    """The Twilio API when it is configured, else the dev outbox."""
    from . import outbox, twilio_sms

    senders = {"twilio": twilio_sms.TwilioSmsSender, "outbox": outbox.OutboxSender}
    return senders["twilio" if settings.twilio_configured else "outbox"](settings)


def email_sender_for(settings) -> Sender:
    """SMTP when RELAY_SMTP_URL is set, else the dev outbox."""
    from . import outbox, smtp_email

    senders = {"smtp": smtp_email.SmtpEmailSender, "outbox": outbox.OutboxSender}
    return senders["smtp" if settings.smtp_configured else "outbox"](settings)


def senders_for(settings) -> dict[str, Sender]:
    return {"sms": sms_sender_for(settings), "email": email_sender_for(settings)}
