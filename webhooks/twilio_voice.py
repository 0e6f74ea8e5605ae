"""issue 17: the Gather callback of an escalation call (relay/notices/escalation.py): Twilio posts the digit the
member pressed to /webhooks/twilio/voice/gather/<token>. The request is checked like the SMS webhook
(X-Twilio-Signature against RELAY_PUBLIC_BASE_URL + path, our AccountSid), and the token, signed by us,
names the notice and the member. Pressing 1 records the acknowledgement (channel "voice") before the
answer; anything else records nothing. The answer is TwiML the caller hears."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from relay.infra.db import transaction
from relay.infra.signing import read_ack_token
from relay.model.tables import Member, Notice, utcnow
from relay.notices import acks
from relay.providers import twilio_sms
from relay.render.twiml import gather_answer

log = logging.getLogger("relay.web.twilio_voice")
blueprint = Blueprint("twilio_voice", __name__)


def _refuse(status: int, reason: str) -> Response:
    log.warning("twilio gather refused (%s) from %s: %s", status, request.remote_addr, reason)
    return Response(reason + "\n", status=status, mimetype="text/plain")


@blueprint.post("/webhooks/twilio/voice/gather/<token>")
def gather(token: str):
    services = current_app.extensions["relay"]
    settings = services.settings
    url = twilio_sms.signed_url(settings.public_base_url, request.path, request.query_string)
    if not twilio_sms.verify(settings.signing_token(), url, request.form, request.headers.get("X-Twilio-Signature")):
        missing = "missing" if not request.headers.get("X-Twilio-Signature") else "invalid"
        return _refuse(403, f"{missing} X-Twilio-Signature for {url}")
    account = request.form.get("AccountSid", "")
    if settings.twilio_account_sid and account and account != settings.twilio_account_sid:
        return _refuse(403, "AccountSid is not this relay's account")
    found = read_ack_token(settings.secret(), token)
    if found is None:
        return _refuse(404, "not a call of ours")
    notice_id, member_id = found
    digits = (request.form.get("Digits") or "").strip()
    with transaction(services.sessions) as session:
        notice, member = session.get(Notice, notice_id), session.get(Member, member_id)
        if notice is None or member is None:
            return _refuse(404, "not a call of ours")
        recorded = digits == "1" and (acks.is_open(notice, utcnow()) or acks.acknowledged(session, notice_id,
                                                                                           member_id))
        if recorded:
            acks.record(session, notice_id, member_id, "voice")
        language = member.language
    log.info("gather for notice %s, member %s: digits %r, %s", notice_id, member_id, digits,
             "acknowledged" if recorded else "nothing recorded")
    return Response(gather_answer(language, recorded), status=200, content_type=twilio_sms.TWIML_CONTENT_TYPE)
