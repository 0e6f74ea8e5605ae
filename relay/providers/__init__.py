"""One small module per provider. The registry of senders is an explicit dict, chosen by settings."""
from __future__ import annotations

from typing import Protocol

from relay.infra.ratelimit import limiter_for
from relay.model.messages import OutboundMessage, SendResult


class Sender(Protocol):
    """Sends one message; raises relay.model.messages.SendError (typed: retryable or not) on failure."""

    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...


def sms_sender_for(settings, limiter=None) -> Sender:
    """The Twilio API when it is configured, else the dev outbox."""
    # reason: start-up cost; every sender module imports this package (Sender), and only the chosen one loads
    from relay.providers import outbox, twilio_sms

    if settings.twilio_configured:
        return twilio_sms.TwilioSmsSender(settings, limiter=limiter)
    return outbox.OutboxSender(settings)


def voice_sender_for(settings) -> Sender:
    """issue 17: Twilio Programmable Voice when Twilio is configured, else the dev outbox (the call's TwiML)."""
    from relay.providers import outbox, twilio_voice  # reason: as above

    if settings.twilio_configured:
        return twilio_voice.TwilioVoiceSender(settings)
    return outbox.OutboxSender(settings)


def email_sender_for(settings, limiter=None) -> Sender:
    """SMTP when RELAY_SMTP_URL is set, else the dev outbox."""
    from relay.providers import outbox, smtp_email  # reason: as above

    if settings.smtp_configured:
        return smtp_email.SmtpEmailSender(settings, limiter=limiter)
    return outbox.OutboxSender(settings)


def whatsapp_sender_for(settings, limiter=None) -> Sender:
    """Twilio's API for WhatsApp when Twilio and RELAY_TWILIO_WHATSAPP_FROM are set, else the dev outbox
    (whether the channel is on at all is decided before sending: relay/outbound/whatsapp_window.py)."""
    from relay.providers import outbox, whatsapp  # reason: as above

    if settings.twilio_configured and settings.whatsapp_enabled:
        return whatsapp.WhatsAppSender(settings, limiter=limiter)
    return outbox.OutboxSender(settings)


def senders_for(settings) -> dict[str, Sender]:
    """The senders of this process, sharing one provider rate limiter (relay/infra/ratelimit.py)."""
    limiter = None
    if settings.twilio_configured or settings.smtp_configured:
        limiter = limiter_for(settings)
    return {"sms": sms_sender_for(settings, limiter), "email": email_sender_for(settings, limiter),
            "voice": voice_sender_for(settings),  # issue 17: escalation calls
            "whatsapp": whatsapp_sender_for(settings, limiter)}
