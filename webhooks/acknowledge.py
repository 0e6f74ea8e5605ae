"""issue 17: the signed acknowledgement link of an urgent notice's email. A GET only shows the notice and a
button (link scanners prefetch every URL in a message, and must not acknowledge for the member); the POST
records the acknowledgement (relay/notices/acks.py), once. The signed token is the proof of who it is."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template
from flask_babel import gettext as _

from relay.infra.db import transaction
from relay.infra.signing import read_ack_token
from relay.model.tables import Notice, utcnow
from relay.notices import acks

from .i18n import refuse

log = logging.getLogger("relay.web.acknowledge")
blueprint = Blueprint("acknowledge", __name__)


def _notice(session, token: str) -> tuple[Notice, int]:
    services = current_app.extensions["relay"]
    found = read_ack_token(services.settings.secret(), token)
    if found is None:
        refuse(404, _("this acknowledgement link is not valid"))
    notice = session.get(Notice, found[0])
    if notice is None or not acks.requests_ack(notice) or not acks.was_sent_to(session, notice, found[1]):
        refuse(404, _("this acknowledgement link is not valid"))
    return notice, found[1]


@blueprint.get("/ack/<token>")
def confirm(token: str):
    with current_app.extensions["relay"].sessions() as session:
        notice, member_id = _notice(session, token)
        done = acks.acknowledged(session, notice.id, member_id)
        return render_template("acknowledge.html", token=token, notice=notice, done=done,
                               closed=not done and not acks.is_open(notice, utcnow()))


@blueprint.post("/ack/<token>")
def acknowledge(token: str):
    with transaction(current_app.extensions["relay"].sessions) as session:
        notice, member_id = _notice(session, token)
        closed = not acks.is_open(notice, utcnow()) and not acks.acknowledged(session, notice.id, member_id)
        if not closed:
            new = acks.record(session, notice.id, member_id, "email")
            log.info("notice %s acknowledged by member %s by the email link%s", notice.id, member_id,
                     "" if new else " (again)")
        return render_template("acknowledge.html", token=token, notice=notice, done=not closed, closed=closed), \
            (409 if closed else 200)
