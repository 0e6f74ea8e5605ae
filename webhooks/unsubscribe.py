"""RFC 8058 one-click unsubscribe: a POST with List-Unsubscribe=One-Click unsubscribes at once (no
cookies, no confirmation page); a GET only shows a page with a button, because link scanners
prefetch every URL in a message. The token says what ends: a member's list mail, or a digest
subscription (issue 5, relay/members/subscriptions.py); either way one confirmation email goes out, once."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, render_template, request

from relay.infra.db import transaction
from relay.infra.signing import read_unsubscribe_token
from relay.members.subscriptions import unsubscribe as apply_unsubscribe
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries

log = logging.getLogger("relay.web.unsubscribe")
blueprint = Blueprint("unsubscribe", __name__)


@blueprint.get("/unsubscribe/<token>")
def confirm(token: str):
    services = current_app.extensions["relay"]
    found = read_unsubscribe_token(services.settings.secret(), token)
    if found is None:
        abort(404, "this unsubscribe link is not valid")
    return render_template("unsubscribe.html", token=token, done=False, scope=found[1])


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    services = current_app.extensions["relay"]
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    source = "email:one-click" if one_click else "email:unsubscribe-page"
    with transaction(services.sessions) as session:
        result = apply_unsubscribe(session, services.settings, token, source)
        ids = fanout.plan(session, result.rows) if result.rows else []
    if not result.found:
        abort(404, "this unsubscribe link is not valid")
    dispatch_deliveries(services, ids)
    scope = read_unsubscribe_token(services.settings.secret(), token)[1]
    log.info("unsubscribed (%s, %s)", scope, source)
    return render_template("unsubscribe.html", token=token, done=True, scope=scope)
