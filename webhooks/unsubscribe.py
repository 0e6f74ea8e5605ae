"""RFC 8058 one-click unsubscribe: a POST with List-Unsubscribe=One-Click unsubscribes at once (no
cookies, no confirmation page); a GET only shows a page with a button, because link scanners
prefetch every URL in a message. The token says what ends: a member's list mail, or a digest
subscription (issue 5, relay/members/subscriptions.py); either way one confirmation email goes out, once."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template, request
from flask_babel import gettext as _

from relay.infra.db import transaction
from relay.infra.signing import read_unsubscribe_token
from relay.members.subscriptions import unsubscribe as apply_unsubscribe
from relay.model.tables import Member
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries

from .i18n import refuse, use_member_language

log = logging.getLogger("relay.web.unsubscribe")
blueprint = Blueprint("unsubscribe", __name__)


@blueprint.get("/unsubscribe/<token>")
def confirm(token: str):
    services = current_app.extensions["relay"]
    found = read_unsubscribe_token(services.settings.secret(), token)
    if found is None:
        refuse(404, _("this unsubscribe link is not valid"))
    _speak_to(services, found)
    return render_template("unsubscribe.html", token=token, done=False, scope=found[1])


def _speak_to(services, found: tuple[int, str]) -> None:
    """A member's list-mail link: the page in the member's own language (issue 21). A digest
    subscription's link names no member: the browser's language."""
    if found[1] == "digest":
        return
    with services.sessions() as session:
        member = session.get(Member, found[0])
        if member is not None:
            use_member_language(member.language, member.timezone)


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    services = current_app.extensions["relay"]
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    source = "email:one-click" if one_click else "email:unsubscribe-page"
    with transaction(services.sessions) as session:
        result = apply_unsubscribe(session, services.settings, token, source)
        ids = fanout.plan(session, result.rows) if result.rows else []
    if not result.found:
        refuse(404, _("this unsubscribe link is not valid"))
    dispatch_deliveries(services, ids)
    found = read_unsubscribe_token(services.settings.secret(), token)
    scope = found[1]
    _speak_to(services, found)
    log.info("unsubscribed (%s, %s)", scope, source)
    return render_template("unsubscribe.html", token=token, done=True, scope=scope)
