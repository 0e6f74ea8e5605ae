"""issue 17: the escalation's voice call through Twilio Programmable Voice (POST .../Calls.json with the
TwiML inline), with the same REST client, stand-in hook and typed errors as SMS (twilio_sms.py). The
delivery's body is the call's TwiML (relay/render/twiml.py). A call comes from one of our own numbers:
a messaging service SID (MG...) cannot place calls, so then the first of RELAY_TWILIO_NUMBERS is used."""
from __future__ import annotations

from relay.model.messages import OutboundMessage, SendError, SendResult
from relay.providers.twilio_sms import TwilioSmsSender, classify_error


class TwilioVoiceSender(TwilioSmsSender):
    name = "twilio-voice"

    def caller_id(self) -> str:
        if not self.settings.uses_messaging_service:
            return self.settings.twilio_from
        return self.settings.twilio_numbers[0] if self.settings.twilio_numbers else ""

    def send(self, message: OutboundMessage) -> SendResult:
        caller = self.caller_id()
        if not caller:
            raise SendError("no phone number to call from: set RELAY_TWILIO_NUMBERS", code="no_caller_id")
        calls = self.client.calls
        self._local.headers = {}
        try:
            created = calls.create(to=message.to, from_=caller, twiml=message.body)
        except Exception as exc:  # every failure becomes a typed SendError
            raise classify_error(exc) from exc
        return SendResult(provider_message_id=created.sid, provider_status=created.status or "queued")
