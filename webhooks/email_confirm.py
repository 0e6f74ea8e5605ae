"""/email/confirm/<token>: a member confirms an email relay held because it did not prove its sender
(issue 13; relay/inbound/email_confirm.py, relay/inbound/mail.py: confirm_held). Thin over the core.

The GET only shows a button (link scanners prefetch every URL in an email); the POST posts, once. The
signed token an attacker cannot know is what protects the POST (no cookies: nothing for a cross-site
request to ride on). Answers: 200 posted, 404 a forged or mangled link, 410 used or expired."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template
from flask_babel import gettext as _

from relay.inbound import email_confirm
from relay.inbound.mail import CONFIRMED, EXPIRED, INVALID, USED, confirm_held
from relay.infra.db import transaction
from relay.model.tables import Case, Post, Thread
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries

from .i18n import refuse

log = logging.getLogger("relay.web.email_confirm")
blueprint = Blueprint("email_confirm", __name__)


@blueprint.get("/email/confirm/<token>")
def confirm_page(token: str):
    if email_confirm.event_of(current_app.extensions["relay"].settings, token) is None:
        refuse(404, _("this confirmation link is not valid"))
    return render_template("email_confirm.html", token=token, status="ask")


@blueprint.post("/email/confirm/<token>")
def confirm_post(token: str):
    services = current_app.extensions["relay"]
    code = ""
    with transaction(services.sessions) as session:
        status, post_id, rows = confirm_held(session, services.settings, token)
        ids = fanout.plan(session, rows) if rows else []
        if post_id is not None:
            post = session.get(Post, post_id)
            code = session.get(Case, session.get(Thread, post.thread_id).case_id).code
    if status == INVALID:
        log.warning("email confirmation refused: not a valid link")
        refuse(404, _("this confirmation link is not valid"))
    dispatch_deliveries(services, ids)
    http = {CONFIRMED: 200, USED: 410, EXPIRED: 410}.get(status, 409)
    return render_template("email_confirm.html", token=token, status=status, code=code), http
