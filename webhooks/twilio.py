"""Twilio webhooks: inbound SMS and delivery status callbacks.

Each view: verify the signature against the public URL (403), parse (400), persist the raw
request deduplicated on the provider's id, commit, answer empty TwiML, and only then enqueue."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from relay.dispatch import dispatch_safely
from relay.inbound import store_inbound
from relay.metrics import WEBHOOKS
from relay.providers import twilio_sms

log = logging.getLogger("relay.web.twilio")
blueprint = Blueprint("twilio", __name__)


def _twiml() -> Response:
    return Response(twilio_sms.EMPTY_TWIML, status=200, content_type=twilio_sms.TWIML_CONTENT_TYPE)


def _refuse(kind: str, status: int, reason: str) -> Response:
    WEBHOOKS.labels(kind=kind, result=str(status)).inc()
    log.warning("twilio %s refused (%s) from %s: %s", kind, status, request.remote_addr, reason)
    return Response(reason + "\n", status=status, mimetype="text/plain")


def _verified_form(kind: str):
    """(raw body, form) of a correctly signed request, or the refusal to send back."""
    services = current_app.extensions["relay"]
    settings = services.settings
    raw = request.get_data(cache=True).decode("utf-8", "replace")  # before .form: keep the raw body
    url = twilio_sms.signed_url(settings.public_base_url, request.path, request.query_string)
    if not twilio_sms.verify(settings.signing_token(), url, request.form,
                             request.headers.get("X-Twilio-Signature")):
        missing = "missing" if not request.headers.get("X-Twilio-Signature") else "invalid"
        return None, _refuse(kind, 403, f"{missing} X-Twilio-Signature for {url}")
    account = request.form.get("AccountSid", "")
    if settings.twilio_account_sid and account and account != settings.twilio_account_sid:
        return None, _refuse(kind, 403, "AccountSid is not this relay's account")
    return (raw, request.form), None


def _keep_and_ack(kind: str, dedupe_key: str, raw: str, sender: str) -> Response:
    """Persist the raw request (deduplicated, committed), then hand it over and answer empty TwiML."""
    services = current_app.extensions["relay"]
    recorded = store_inbound(services.engine, provider="twilio", kind=kind, dedupe_key=dedupe_key, raw=raw,
                             sender=sender)
    if recorded.created:
        dispatch_safely(services.dispatcher.inbound_received, recorded.event_id, kind)
    else:
        log.info("twilio %s %s: duplicate of event %s, nothing to do", kind, dedupe_key, recorded.event_id)
    WEBHOOKS.labels(kind=kind, result="accepted" if recorded.created else "duplicate").inc()
    return _twiml()


@blueprint.post("/webhooks/twilio/sms")
def inbound_sms():
    services = current_app.extensions["relay"]
    verified, refusal = _verified_form("sms")
    if refusal is not None:
        return refusal
    raw, form = verified
    try:
        message = twilio_sms.parse_inbound(form)
    except twilio_sms.BadWebhook as exc:
        return _refuse("sms", 400, str(exc))
    own = services.settings.own_numbers
    if own and message.recipient not in own:
        return _refuse("sms", 400, f"To {message.recipient} is not one of this relay's numbers")
    return _keep_and_ack("sms", message.provider_message_id, raw, message.sender)


@blueprint.post("/webhooks/twilio/status")
def status_callback():
    verified, refusal = _verified_form("status")
    if refusal is not None:
        return refusal
    raw, form = verified
    try:
        update = twilio_sms.parse_status(form)
    except twilio_sms.BadWebhook as exc:
        return _refuse("status", 400, str(exc))
    # Several callbacks per message: dedupe on (MessageSid, MessageStatus), never the sid alone.
    return _keep_and_ack("status", f"{update.provider_message_id}:{update.provider_status}", raw, "")
