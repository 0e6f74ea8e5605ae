"""Twilio webhooks: inbound SMS (and WhatsApp, `whatsapp:` addresses) and delivery status callbacks.

Each handler: verify the signature against the public URL (403), parse (400), persist the raw
request deduplicated on the provider's id, commit, answer empty TwiML, and only then enqueue; with
the database unreachable, keep it in the local spool and answer empty TwiML (relay/infra/spool.py).
The handlers take the services and a plain werkzeug request, so relay web serves them ahead of
Flask (webhooks/fast_path.py); the Flask views below are the same handlers for Flask's own
dispatch (the test client, and any server that does not install the fast path)."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from relay.inbound.record import store_inbound
from relay.inbound.spool_replay import UNREACHABLE
from relay.infra.dispatch import dispatch_safely
from relay.infra.metrics import WEBHOOKS
from relay.infra.spool import Entry, SpoolFull
from relay.model.tables import utcnow
from relay.providers import twilio_sms, whatsapp

log = logging.getLogger("relay.web.twilio")
blueprint = Blueprint("twilio", __name__)


def _twiml() -> Response:
    return Response(twilio_sms.EMPTY_TWIML, status=200, content_type=twilio_sms.TWIML_CONTENT_TYPE)


def _refuse(request, kind: str, status: int, reason: str) -> Response:
    WEBHOOKS.labels(kind=kind, result=str(status)).inc()
    log.warning("twilio %s refused (%s) from %s: %s", kind, status, request.remote_addr, reason)
    return Response(reason + "\n", status=status, mimetype="text/plain")


def _verified_form(services, request, kind: str):
    """(raw body, form) of a correctly signed request, or the refusal to send back."""
    settings = services.settings
    raw = request.get_data(cache=True).decode("utf-8", "replace")  # before .form: keep the raw body
    url = twilio_sms.signed_url(settings.public_base_url, request.path, request.query_string)
    if not twilio_sms.verify(settings.signing_token(), url, request.form,
                             request.headers.get("X-Twilio-Signature")):
        missing = "missing" if not request.headers.get("X-Twilio-Signature") else "invalid"
        return None, _refuse(request, kind, 403, f"{missing} X-Twilio-Signature for {url}")
    account = request.form.get("AccountSid", "")
    expected = settings.webhook_account_sid
    if expected and account and account != expected:
        return None, _refuse(request, kind, 403, "AccountSid is not this relay's account")
    return (raw, request.form), None


def _spool_or_raise(services, kind: str, entry: Entry, exc: Exception) -> Response:
    """The database is unreachable: keep the verified request in the local spool and answer 200
    (Twilio would not retry a 503), or, when the spool cannot take it, raise for the 503 as before."""
    try:
        services.spool.append(entry)
    except (SpoolFull, OSError) as refused:
        log.error("twilio %s %s: database unavailable and the spool refused it (%s: %s); answering 503",
                  kind, entry.dedupe_key, type(refused).__name__, refused)
        raise exc from refused
    log.warning("twilio %s %s: database unavailable (%s), kept in the spool", kind, entry.dedupe_key,
                str(exc).splitlines()[0])
    if services.replayer is not None:
        services.replayer.start()
    WEBHOOKS.labels(kind=kind, result="spooled").inc()
    return _twiml()


def _keep_and_ack(services, kind: str, dedupe_key: str, raw: str, sender: str) -> Response:
    """Persist the raw request (deduplicated, committed), then hand it over and answer empty TwiML.
    With the database unreachable, the request is kept in the spool instead (relay/infra/spool.py)."""
    try:
        recorded = store_inbound(services.engine, provider="twilio", kind=kind, dedupe_key=dedupe_key, raw=raw,
                                 sender=sender)
    except UNREACHABLE as exc:
        if services.spool is None:
            raise
        entry = Entry(provider="twilio", kind=kind, dedupe_key=dedupe_key, raw=raw, sender=sender,
                      received_at=utcnow())
        return _spool_or_raise(services, kind, entry, exc)
    if services.replayer is not None:
        services.replayer.poke()  # the database is back: anything spooled goes in now
    if recorded.created:
        dispatch_safely(services.dispatcher.inbound_received, recorded.event_id, kind)
    else:
        log.info("twilio %s %s: duplicate of event %s, nothing to do", kind, dedupe_key, recorded.event_id)
    WEBHOOKS.labels(kind=kind, result="accepted" if recorded.created else "duplicate").inc()
    return _twiml()


def receive_sms(services, request) -> Response:
    verified, refusal = _verified_form(services, request, "sms")
    if refusal is not None:
        return refusal
    raw, form = verified
    try:
        message = twilio_sms.parse_inbound(form)
    except twilio_sms.BadWebhook as exc:
        return _refuse(request, "sms", 400, str(exc))
    own = services.settings.own_numbers
    if whatsapp.is_whatsapp(message.recipient):  # issue 19: WhatsApp comes to this webhook too
        ours = services.settings.whatsapp_number
        if ours and message.recipient != ours:
            return _refuse(request, "sms", 400, f"To {message.recipient} is not this relay's WhatsApp sender")
    elif own and message.recipient not in own:
        return _refuse(request, "sms", 400, f"To {message.recipient} is not one of this relay's numbers")
    return _keep_and_ack(services, "sms", message.provider_message_id, raw, message.sender)


def receive_status(services, request) -> Response:
    verified, refusal = _verified_form(services, request, "status")
    if refusal is not None:
        return refusal
    raw, form = verified
    try:
        update = twilio_sms.parse_status(form)
    except twilio_sms.BadWebhook as exc:
        return _refuse(request, "status", 400, str(exc))
    # Several callbacks per message: dedupe on (MessageSid, MessageStatus), never the sid alone.
    return _keep_and_ack(services, "status", f"{update.provider_message_id}:{update.provider_status}", raw, "")


# The paths the fast path serves (webhooks/fast_path.py), and the same handlers as Flask views.
HANDLERS = {"/webhooks/twilio/sms": receive_sms, "/webhooks/twilio/status": receive_status}


@blueprint.post("/webhooks/twilio/sms")
def inbound_sms():
    return receive_sms(current_app.extensions["relay"], request._get_current_object())


@blueprint.post("/webhooks/twilio/status")
def status_callback():
    return receive_status(current_app.extensions["relay"], request._get_current_object())
