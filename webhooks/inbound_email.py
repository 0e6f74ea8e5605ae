"""Inbound email webhooks (Mailgun, SendGrid Inbound Parse, Postmark): verify, persist the raw body
deduplicated on the RFC Message-ID, acknowledge, enqueue. Parsing for real happens in the worker.

Answers chosen so each provider stops retrying what will never be accepted: Mailgun 406, Postmark
403; SendGrid retries anything but 2xx, so unusable mail is kept as `invalid` and acknowledged."""
from __future__ import annotations

import hashlib
import logging
import time

from flask import Blueprint, Response, abort, current_app, request

from relay.inbound.record import record_inbound
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.infra.logs import mask_text
from relay.infra.metrics import WEBHOOKS
from relay.infra.storage import insert_if_new
from relay.model.tables import InboundEvent, WebhookNonce, utcnow
from relay.providers import mailgun, postmark, sendgrid
from relay.providers.errors import BadWebhook
from relay.providers.inbound_email import PROVIDERS, parse_inbound_email

log = logging.getLogger("relay.web.email")
blueprint = Blueprint("email", __name__)

REFUSE_FOREVER = {"mailgun": 406, "postmark": 403, "sendgrid": 200}


def _answer(provider: str, status: int, reason: str) -> Response:
    WEBHOOKS.labels(kind=f"email:{provider}", result=str(status)).inc()
    if status >= 400:
        log.warning("email webhook %s refused (%s) from %s: %s", provider, status, request.remote_addr,
                    mask_text(reason))
    return Response(reason + "\n", status=status, mimetype="text/plain")


def _credentials(provider: str, settings) -> str | None:
    """SendGrid and Postmark: None when the request carries the configured secret (Basic auth or the
    path token), else why not. Needs no body, so it runs before a byte of the body is read."""
    auth = request.authorization
    if provider == "sendgrid":
        if not settings.sendgrid_secret:
            return "RELAY_SENDGRID_SECRET is not set"
        path_token = (request.view_args or {}).get("path_token") or request.args.get("token")
        ok = sendgrid.verify(settings.sendgrid_secret, auth.password if auth else None, path_token)
        return None if ok else "missing or wrong secret"
    if not (settings.postmark_user and settings.postmark_password):
        return "RELAY_POSTMARK_USER and RELAY_POSTMARK_PASSWORD are not set"
    ok = postmark.verify(settings.postmark_user, settings.postmark_password,
                         auth.username if auth else None, auth.password if auth else None)
    return None if ok else "missing or wrong basic auth"


def _mailgun_signature(settings, body: bytes, content_type: str) -> tuple[str | None, str]:
    """Mailgun: (None when the body's signature verifies else why not, the signature's token).

    The signature is inside the body, so the body is read (bounded by max_content_length) and its form
    is stream-parsed by werkzeug with the request's caps on parts and field memory (a 413 when over):
    cheap, where relay's own parser (the email package) takes seconds over a hostile 20 MiB body; that
    one runs only after the signature verifies."""
    if not settings.mailgun_signing_key:
        return "RELAY_MAILGUN_SIGNING_KEY is not set", ""
    if content_type.split(";", 1)[0].strip().lower() == "application/json":  # an event webhook (refused later)
        try:
            timestamp, token, signature = mailgun.signature_fields(content_type, body)
        except BadWebhook as exc:
            return str(exc), ""
    else:
        form = request.form  # werkzeug, from the cached body; a malformed form reads as empty
        timestamp, token, signature = (form.get(name, "") for name in ("timestamp", "token", "signature"))
    return mailgun.verify_signature(settings.mailgun_signing_key, timestamp, token, signature,
                                    now=time.time(), max_age=settings.mailgun_max_age), token


@blueprint.post("/webhooks/email/<provider>")
@blueprint.post("/webhooks/email/<provider>/<path_token>")  # SendGrid: the secret in the URL path
def inbound_email(provider: str, path_token: str | None = None):
    if provider not in PROVIDERS:
        abort(404, f"no email provider {provider!r} (known: {', '.join(PROVIDERS)})")
    services = current_app.extensions["relay"]
    settings = services.settings
    content_type = request.headers.get("Content-Type", "")
    token = ""
    if provider == "mailgun":
        body = request.get_data(cache=True)
        problem, token = _mailgun_signature(settings, body, content_type)
    else:  # authenticated before the body is read at all
        problem = _credentials(provider, settings)
        body = b"" if problem else request.get_data(cache=True)
    if problem:
        return _answer(provider, 403, problem)
    try:
        email = parse_inbound_email(provider, content_type, body)
        dedupe_key = f"mid:{email.message_id}" if email.message_id else (
            f"pid:{email.provider_message_id}" if email.provider_message_id else "")
        sender, invalid = email.from_address, None
    except (BadWebhook, ValueError) as exc:
        email, sender, invalid = None, "", str(exc)
        dedupe_key = ""
    dedupe_key = dedupe_key[:120] or f"sha:{hashlib.sha256(body).hexdigest()}"
    # Kept even when unusable (outcome "invalid"), so nothing a provider delivered is ever lost.
    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider=provider, kind="email", dedupe_key=dedupe_key,
                                  raw="", sender=sender, payload=body, content_type=content_type)
        if provider == "mailgun" and recorded.created:
            if insert_if_new(session, WebhookNonce.__table__, {"provider": "mailgun", "nonce": token[:200],
                                                                "inbound_event_id": recorded.event_id,
                                                                "created_at": utcnow()}) is None:
                session.rollback()
                return _answer(provider, 406, "Mailgun token already used for another message (replay)")
    if invalid is not None:
        with transaction(services.sessions) as session:
            event = session.get(InboundEvent, recorded.event_id)
            if event.processed_at is None:
                event.processed_at, event.outcome, event.detail = utcnow(), "invalid", invalid
        return _answer(provider, REFUSE_FOREVER[provider], f"not accepted: {invalid}")
    if recorded.created:
        dispatch_safely(services.dispatcher.inbound_received, recorded.event_id, "email")
        return _answer(provider, 200, "accepted")
    log.info("email webhook %s: duplicate of event %s (%s)", provider, recorded.event_id, dedupe_key)
    return _answer(provider, 200, "duplicate")
