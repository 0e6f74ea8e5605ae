"""Twilio Programmable Messaging: verify, parse, acknowledge, send, map statuses and errors.

A real inbound webhook (application/x-www-form-urlencoded, secrets removed):

    ToCountry=US&ToState=CA&SmsMessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&NumMedia=0&ToCity=
    &FromZip=&SmsSid=SM1f0e8ae6ade43cb3c0ce4525424e404f&FromState=&SmsStatus=received&FromCity=
    &Body=C123+looks+like+organising+pneumonia&FromCountry=KR&To=%2B14155550100
    &MessagingServiceSid=MG...&ToZip=&NumSegments=1&MessageSid=SM1f0e8ae6ade43cb3c0ce4525424e404f
    &AccountSid=AC...&From=%2B821012345678&ApiVersion=2010-04-01

A status callback carries MessageSid, MessageStatus (queued, sent, delivered, undelivered,
failed, ...) and ErrorCode; several arrive per message, possibly out of order.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from typing import Any, Mapping
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from relay.infra.ratelimit import sms_rate, take_slot
from relay.model.channels import SMS_MAX_CHARS
from relay.model.delivery_states import ACCEPTED, DELIVERED, FAILED, READ, SENT, UNDELIVERED
from relay.model.messages import InboundMessage, OutboundMessage, SendError, SendResult, StatusUpdate
from relay.providers.errors import BadWebhook  # one error type for every provider

__all__ = ["BadWebhook"]

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
TWIML_CONTENT_TYPE = "text/xml; charset=utf-8"

# Twilio's MessageStatus words -> relay's delivery status.
TWILIO_STATUS = {
    "accepted": ACCEPTED,
    "scheduled": ACCEPTED,
    "queued": ACCEPTED,
    "sending": ACCEPTED,
    "sent": SENT,
    "delivered": DELIVERED,
    "read": READ,  # WhatsApp (issue 19)
    "undelivered": UNDELIVERED,
    "failed": FAILED,
    "canceled": FAILED,
}

OPTED_OUT_CODES = frozenset({21610})
OPTED_OUT_ERROR_CODES = frozenset(str(code) for code in OPTED_OUT_CODES)
RETRYABLE_HTTP = frozenset({429}) | frozenset(range(500, 600))




def signed_url(public_base_url: str, path: str, query_string: bytes | str = b"") -> str:
    """The URL Twilio signed: the configured public base + the path + the raw query string.

    Rebuilt from settings rather than from the request, which behind a proxy carries the
    internal scheme, host and port."""
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return f"{public_base_url.rstrip('/')}{path}" + (f"?{query}" if query else "")


def verify(auth_token: str, url: str, params, signature: str | None) -> bool:
    """Check X-Twilio-Signature with twilio's own validator (constant-time compare).

    `params` should be the MultiDict of the form itself so repeated keys are all signed. The URL
    exactly as configured is tried first (one HMAC: what Twilio signs nearly always); the
    validator's full check follows only if that fails (it also tries the URL with and without
    the port, and checks bodySHA256, so such URLs go to it directly)."""
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    if "bodySHA256" not in url and hmac.compare_digest(validator.compute_signature(url, params).encode(),
                                                       signature.encode("utf-8", "replace")):
        return True
    return validator.validate(url, params, signature)


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Compute the signature Twilio would send (for `relay demo` and tests)."""
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def _required(form: Mapping[str, str], name: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise BadWebhook(f"missing field {name}")
    return value


def parse_inbound(form: Mapping[str, str]) -> InboundMessage:
    """The inbound message in a webhook form (or a stored raw body)."""
    sid = _required(form, "MessageSid")
    if not (sid.startswith(("SM", "MM")) and 2 < len(sid) <= 64):
        raise BadWebhook(f"MessageSid {sid[:40]!r} is not a Twilio message id")
    sender = _required(form, "From")
    recipient = _required(form, "To")
    try:
        num_media = int(form.get("NumMedia") or 0)
    except ValueError:
        raise BadWebhook("NumMedia is not a number") from None
    body = form.get("Body") or ""
    if len(body) > SMS_MAX_CHARS * 4:
        raise BadWebhook(f"Body of {len(body)} characters is longer than any SMS")
    return InboundMessage(channel="sms", provider="twilio", provider_message_id=sid,
                          sender=sender, recipient=recipient, body=body, num_media=num_media)


def parse_status(form: Mapping[str, str]) -> StatusUpdate:
    sid = _required(form, "MessageSid")
    provider_status = _required(form, "MessageStatus").lower()
    if provider_status not in TWILIO_STATUS:
        raise BadWebhook(f"unknown MessageStatus {provider_status[:40]!r}")
    return StatusUpdate(provider="twilio", provider_message_id=sid,
                        status=TWILIO_STATUS[provider_status], provider_status=provider_status,
                        error_code=(form.get("ErrorCode") or None))


def parse_raw(raw: str) -> dict[str, str]:
    """A stored raw form body back into fields (first value of a repeated key)."""
    fields: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by Twilio; it counts as absent)."""
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def classify_error(exc: Exception, retry_after: float | None = None) -> SendError:
    """Turn whatever the twilio library raised into a typed SendError (with the 429's Retry-After,
    which TwilioRestException does not carry: the sender reads it from the response itself)."""
    # reason: start-up cost; the twilio REST client (and requests) loads only in a process that sends SMS
    from requests import RequestException
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        code = exc.code
        status = exc.status or 0
        text = f"Twilio {status} {code}: {exc.msg}"
        if code in OPTED_OUT_CODES:
            return SendError(text, code=str(code), opted_out=True)
        if status in RETRYABLE_HTTP or code == 20429:
            # a 429 that says when to come back is a throttle, not a failed attempt (relay.outbound.sending)
            throttled = (status == 429 or code == 20429) and retry_after is not None
            return SendError(text, code=str(code or status), retryable=True, retry_after=retry_after,
                             throttled=throttled)
        return SendError(text, code=str(code or status))
    if isinstance(exc, RequestException):
        return SendError(f"Twilio unreachable: {type(exc).__name__}: {exc}", code="network", retryable=True)
    return SendError(f"Twilio client error: {type(exc).__name__}: {exc}", code="client", retryable=True)


class TwilioSmsSender:
    """Sends through twilio's REST client (messages.create), one client per process.

    RELAY_TWILIO_API_URL points the client at another base URL (a stand-in on loopback), through
    twilio's documented custom-HTTP-client hook."""

    name = "twilio"

    def __init__(self, settings, timeout: float = 10.0, limiter=None):
        self.settings = settings
        self.timeout = timeout
        self.limiter = limiter  # shared provider rate limit (relay/infra/ratelimit.py); None: no limit
        self.rate = sms_rate(settings.sms_rate, settings.twilio_from)
        self.rate_key = f"sms:{settings.twilio_from}"
        self._local = threading.local()  # one client (one requests.Session) per thread: Session is not thread-safe
        self._async: Any = None  # the lean async client for send_async (relay/providers/twilio_async.py), made on use

    def _build_client(self):
        # reason: start-up cost, as in classify_error
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        api_url = self.settings.twilio_api_url
        local = self._local

        class _HttpClient(TwilioHttpClient):
            def request(self, method, url, *args, **kwargs):
                if api_url and url.startswith("https://api.twilio.com"):
                    url = api_url + url[len("https://api.twilio.com"):]
                response = super().request(method, url, *args, **kwargs)
                local.headers = response.headers or {}  # TwilioRestException drops them (Retry-After)
                return response

        return Client(self.settings.twilio_account_sid, self.settings.twilio_auth_token,
                      http_client=_HttpClient(timeout=self.timeout))

    @property
    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._build_client()
        return client

    def warm_up(self) -> None:
        """Load twilio's REST client modules now (the first messages.create otherwise imports them), and
        with RELAY_SEND_ASYNC the bulk sender's lean client (aiohttp, its default TLS contexts)."""
        self.client.messages  # noqa: B018 (the attribute access is the point)
        if self.settings.send_async:
            self.async_client()
            import aiohttp  # noqa: F401  (reason: the client imports it at its first send; ~0.2 s of a first batch)

    def _params(self, message: OutboundMessage) -> dict[str, str]:
        params = {
            "to": message.to,
            "body": message.body,
            "status_callback": f"{self.settings.public_base_url}/webhooks/twilio/status",
        }
        if self.settings.uses_messaging_service:
            params["messaging_service_sid"] = self.settings.twilio_from
        else:
            params["from_"] = self.settings.twilio_from
        return params

    def send(self, message: OutboundMessage) -> SendResult:
        params = self._params(message)
        messages = self.client.messages  # built before our slot: the slot is for the request itself
        if self.limiter is not None:
            take_slot(self.limiter, self.rate_key, self.rate, message)  # may say: come back for a booked slot
        self._local.headers = {}
        try:
            created = messages.create(**params)
        except Exception as exc:  # every failure becomes a typed SendError
            headers = getattr(self._local, "headers", None) or {}
            error = classify_error(exc, retry_after_seconds(headers.get("Retry-After")))
            if error.retry_after and self.limiter is not None and getattr(exc, "status", None) == 429:
                self.limiter.pause(self.rate_key, error.retry_after)  # every worker waits, not only this one
            raise error from exc
        return SendResult(provider_message_id=created.sid, provider_status=created.status or "queued")

    def async_client(self):
        """The lean aiohttp client for send_async (relay/providers/twilio_async.py), made on first use."""
        from relay.providers.twilio_async import AsyncTwilioClient  # reason: start-up cost

        if self._async is None:
            self._async = AsyncTwilioClient(self.settings.twilio_account_sid, self.settings.twilio_auth_token,
                                            self.settings.twilio_api_url, self.timeout,
                                            max(1, self.settings.send_concurrency))
        return self._async

    async def _create_in_slot(self, params: dict, message: OutboundMessage):
        """The lean client's create (relay/providers/twilio_async.py) once this sender's rate slot comes: (created,
        None) or (None, (exception, answer headers)). Shared by SMS and WhatsApp (relay/providers/whatsapp.py)."""
        client = self.async_client()
        client.session()  # made before our slot: the slot is for the request itself
        if self.limiter is not None and self.rate is not None:  # a Redis call that may wait for the slot
            await asyncio.to_thread(take_slot, self.limiter, self.rate_key, self.rate, message)
        return await client.create(params)

    async def send_async(self, message: OutboundMessage) -> SendResult:
        """send(), as a coroutine on the process's loop (relay/infra/eventloop.py; the bulk sender,
        relay/outbound/async_batch.py): the same request (relay/providers/twilio_async.py), the same slot,
        errors and provider pause."""
        from relay.providers.twilio_async import network_error  # reason: start-up cost

        created, failure = await self._create_in_slot(self._params(message), message)
        if failure is not None:
            exc, headers = failure
            error = network_error(exc) or classify_error(exc, retry_after_seconds(headers.get("Retry-After")))
            if error.retry_after and self.limiter is not None and getattr(exc, "status", None) == 429:
                await asyncio.to_thread(self.limiter.pause, self.rate_key, error.retry_after)
            raise error from exc
        return SendResult(provider_message_id=created.sid, provider_status=created.status or "queued")
