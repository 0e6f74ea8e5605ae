"""RFC 8058 one-click unsubscribe: a POST with List-Unsubscribe=One-Click unsubscribes at once (no
cookies, no confirmation page); a GET only shows a page with a button, because link scanners
prefetch every URL in a message."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, render_template, request

from relay.consent import unsubscribe_by_token
from relay.db import transaction
from relay.tokens import read_unsubscribe_token

log = logging.getLogger("relay.web.unsubscribe")
blueprint = Blueprint("unsubscribe", __name__)


@blueprint.get("/unsubscribe/<token>")
def confirm(token: str):
    services = current_app.extensions["relay"]
    if read_unsubscribe_token(services.settings.secret(), token) is None:
        abort(404, "this unsubscribe link is not valid")
    return render_template("unsubscribe.html", token=token, done=False)


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    services = current_app.extensions["relay"]
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    source = "email:one-click" if one_click else "email:unsubscribe-page"
    with transaction(services.sessions) as session:
        member = unsubscribe_by_token(session, services.settings.secret(), token, source)
        member_id = member.id if member else None
    if member_id is None:
        abort(404, "this unsubscribe link is not valid")
    log.info("member %s unsubscribed from email (%s)", member_id, source)
    return render_template("unsubscribe.html", token=token, done=True)
