"""WhatsApp through Twilio's Messages API (issue 19): the same REST endpoint, webhook and signature as
SMS (relay/providers/twilio_sms.py), with WhatsApp's own rules:

- addresses carry the `whatsapp:` prefix in `From`/`To`; an inbound message also has `ProfileName`
  (the member's WhatsApp display name: a claim, never an identity), `WaId` (the sender's WhatsApp id,
  its number without `+`), for media `NumMedia`/`MediaUrl0`/`MediaContentType0` as MMS, for a shared
  location `Latitude`/`Longitude` (with `Address`/`Label`), and `MessageType` (text, image, location, ...);
- free-form messages only within 24 hours of the member's last message to us; outside it a template
  through the Content API: `ContentSid` plus `ContentVariables`, a JSON object as a string
  (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder);
- status callbacks add `read`, and failures carry WhatsApp's 630xx error codes (classified below).

A real inbound body is in tests/data/whatsapp/. The request is built by twilio's own REST client, as
for SMS; only the parameters differ."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from relay.infra.ratelimit import Rate, take_slot
from relay.model.channels import WHATSAPP_PREFIX
from relay.model.messages import OutboundMessage, SendError, SendResult
from relay.providers.twilio_sms import TwilioSmsSender, classify_error, retry_after_seconds

log = logging.getLogger(__name__)

# Twilio's WhatsApp error codes (https://www.twilio.com/docs/api/errors/630xx) -> what relay does.
# Retryable: a rate or a daily limit; trying later can succeed.
RETRYABLE_CODES = frozenset({
    "63018",  # rate limit exceeded for the channel (sender MPS, the portfolio's business-initiated limit)
    "63038",  # the account's daily messaging limit reached
    "63036",  # the recipient is temporarily unavailable (a Meta-side delivery error, retried later)
})
# Opt-out: the member blocked us on WhatsApp or withdrew consent; nothing more goes until they opt in again.
OPT_OUT_CODES = frozenset({
    "63014",  # channel message blocked by user action
})
# Final, with the code shown: trying again sends the same thing into the same wall.
FINAL_CODES = frozenset({
    "63016",  # outside the 24-hour window (free-form, or a template sent as Body): a template is needed
    "63024",  # invalid message recipient (not a WhatsApp user)
    "63003",  # the channel could not find the To address
    "63013",  # channel policy violation
    "63015",  # the sandbox recipient has not joined
    "63021",  # the channel found the content invalid
    "63032",  # WhatsApp will not deliver to this user (a Meta limitation)
    "63049",  # Meta chose not to deliver this marketing message
    "63112",  # the Meta business account is disabled
})
WINDOW_CLOSED = "63016"
# Twilio's default throughput of one WhatsApp sender (messages per second); a Messaging Service's pool is
# left to Twilio, as for SMS. RELAY_WHATSAPP_RATE sets either, once Twilio has approved a higher rate.
WHATSAPP_MPS = 80.0


def sender_rate(setting: str, sender: str) -> Rate | None:
    """The pace of the WhatsApp sender for RELAY_WHATSAPP_RATE: `auto` (80/s for a number, none for a
    Messaging Service), a number per second, or 0 for none."""
    value = (setting or "auto").strip().lower()
    if value == "auto":
        return None if sender.startswith("MG") else Rate(WHATSAPP_MPS)
    per_second = float(value)
    return Rate(per_second) if per_second > 0 else None


def classify(exc: Exception, retry_after: float | None = None) -> SendError:
    """twilio_sms.classify_error, then WhatsApp's own codes: retryable, opt-out or final."""
    error = classify_error(exc, retry_after)
    code = error.code or ""
    if code in OPT_OUT_CODES:
        return SendError(str(error), code=code, opted_out=True)
    if code in RETRYABLE_CODES:
        return SendError(str(error), code=code, retryable=True, retry_after=error.retry_after)
    if code in FINAL_CODES:
        return SendError(str(error), code=code)
    return error


def is_whatsapp(address: str | None) -> bool:
    return bool(address) and str(address).startswith(WHATSAPP_PREFIX)


def bare(address: str) -> str:
    """`whatsapp:+8210…` -> `+8210…` (the E.164 number relay stores)."""
    return address[len(WHATSAPP_PREFIX):] if is_whatsapp(address) else address


@dataclass(frozen=True)
class WhatsAppExtras:
    """What a WhatsApp webhook carries beyond an SMS one."""

    number: str  # the sender's E.164 number (From without the prefix)
    profile_name: str  # the WhatsApp display name: shown, never trusted
    wa_id: str
    message_type: str  # text | image | document | audio | video | location | sticker | ... ('' if absent)
    latitude: str = ""
    longitude: str = ""

    @property
    def is_location(self) -> bool:
        return bool(self.latitude and self.longitude) or self.message_type == "location"


def extras(form: Mapping[str, str]) -> WhatsAppExtras:
    return WhatsAppExtras(number=bare((form.get("From") or "").strip()),
                          profile_name=(form.get("ProfileName") or "").strip()[:100],
                          wa_id=(form.get("WaId") or "").strip()[:32],
                          message_type=(form.get("MessageType") or "").strip().lower()[:20],
                          latitude=(form.get("Latitude") or "").strip()[:20],
                          longitude=(form.get("Longitude") or "").strip()[:20])


# --------------------------------------------------------------------------- templates (Content API)


class TemplateError(ValueError):
    """The templates file cannot be used; the message names the file and what is wrong."""


def load_templates(path: Path) -> dict[str, dict[str, str]]:
    """{message kind: {language: ContentSid}} from RELAY_WHATSAPP_TEMPLATES (JSON). A missing file means
    no templates: outside the window nothing can go on WhatsApp, and relay falls back to other channels.

    The file: {"new_case": {"en": "HX…", "ko": "HX…"}, "relay": {"en": "HX…"}, ...}. Each template takes
    the variables {"1": case code, "2": title, "3": library link} (template_variables)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected an object of message kinds")
    found: dict[str, dict[str, str]] = {}
    for kind, languages in data.items():
        if kind.startswith("_"):  # comments
            continue
        if not isinstance(languages, dict) or not all(
                isinstance(sid, str) and sid.startswith("HX") for sid in languages.values()):
            raise TemplateError(f"{path}: {kind!r} must map languages to Content SIDs (HX…)")
        found[kind] = dict(languages)
    return found


def template_for(templates: dict[str, dict[str, str]], kind: str, language: str) -> tuple[str, str] | None:
    """(ContentSid, the language it is in) for a kind of message, in the member's language or English."""
    languages = templates.get(kind) or {}
    for lang in (language, "en"):
        if languages.get(lang):
            return languages[lang], lang
    return None


def template_variables(code: str, title: str, link: str) -> str:
    """ContentVariables: a JSON object as a string; WhatsApp refuses empty values, so none is empty."""
    return json.dumps({"1": code or "-", "2": (title or "-")[:250], "3": link or "-"}, ensure_ascii=False)


# --------------------------------------------------------------------------- sending


class WhatsAppSender(TwilioSmsSender):
    """Sends WhatsApp messages through twilio's REST client: free-form Body, or ContentSid +
    ContentVariables for a template; the sender is RELAY_TWILIO_WHATSAPP_FROM."""

    name = "twilio-whatsapp"

    def __init__(self, settings, timeout: float = 10.0, limiter=None):
        super().__init__(settings, timeout=timeout, limiter=limiter)
        self.rate_key = f"whatsapp:{settings.whatsapp_from}"
        self.rate = sender_rate(settings.whatsapp_rate, settings.whatsapp_from)

    def params(self, message: OutboundMessage) -> dict[str, str]:
        to = message.to if is_whatsapp(message.to) else f"{WHATSAPP_PREFIX}{message.to}"
        params = {"to": to, "status_callback": f"{self.settings.public_base_url}/webhooks/twilio/status"}
        if message.content_sid:  # Twilio refuses a template sent as Body outside the window (63016)
            params["content_sid"] = message.content_sid
            params["content_variables"] = message.content_variables or "{}"
        else:
            params["body"] = message.body
        sender = self.settings.whatsapp_from
        if sender.startswith("MG"):
            params["messaging_service_sid"] = sender
        else:
            params["from_"] = sender
        return params

    def send(self, message: OutboundMessage) -> SendResult:
        params = self.params(message)
        messages = self.client.messages
        if self.limiter is not None:
            take_slot(self.limiter, self.rate_key, self.rate, message)
        self._local.headers = {}
        try:
            created = messages.create(**params)
        except Exception as exc:
            headers = getattr(self._local, "headers", None) or {}
            raise classify(exc, retry_after_seconds(headers.get("Retry-After"))) from exc
        return SendResult(provider_message_id=created.sid, provider_status=created.status or "queued")

    async def send_async(self, message: OutboundMessage) -> SendResult:
        """send(), as a coroutine on the process's loop (the bulk sender, issue 18): this sender's own
        request (WhatsApp sender, template or body) through the lean client (relay/providers/twilio_async.py),
        the same slot and the same classification (630xx codes) as send()."""
        from relay.providers.twilio_async import network_error  # reason: start-up cost

        created, failure = await self._create_in_slot(self.params(message), message)
        if failure is not None:
            exc, headers = failure
            raise (network_error(exc) or classify(exc, retry_after_seconds(headers.get("Retry-After")))) from exc
        return SendResult(provider_message_id=created.sid, provider_status=created.status or "queued")
