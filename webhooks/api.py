"""JSON API under /api/v1/. For now: a member's channel choice. Guarded by a bearer token
(RELAY_API_TOKEN); without one configured the API answers 503 rather than being open."""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, abort, current_app, jsonify, request

from relay.db import transaction
from relay.members import RowError, find_member, set_channels

log = logging.getLogger("relay.web.api")
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.before_request
def require_token():
    expected = current_app.extensions["relay"].settings.api_token
    if not expected:
        abort(503, "the API is off: set RELAY_API_TOKEN")
    given = request.headers.get("Authorization", "")
    if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), expected.encode())):
        abort(401, "a valid 'Authorization: Bearer <RELAY_API_TOKEN>' header is needed")


def _member_json(member) -> dict:
    return {"id": member.id, "name": member.name, "phone": member.phone, "email": member.email,
            "channels": list(member.channels), "sms_opted_out": member.sms_opted_out_at is not None,
            "email_opted_out": member.email_opted_out_at is not None,
            "email_suspended": member.email_suspended_at is not None,
            "email_hard_bounces": member.email_hard_bounces}


@blueprint.get("/members/<who>")
def get_member(who: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        member = find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        return jsonify(_member_json(member))


@blueprint.put("/members/<who>/channels")
def put_channels(who: str):
    """Body: {"channels": ["sms", "email"]} — an empty list stops case discussion on every channel."""
    services = current_app.extensions["relay"]
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("channels"), list) or \
            not all(isinstance(c, str) for c in data["channels"]):
        abort(400, 'expected JSON {"channels": ["sms", "email"]}')
    with transaction(services.sessions) as session:
        member = find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        try:
            set_channels(member, data["channels"])
        except RowError as exc:
            abort(422, str(exc))
        result = _member_json(member)
    log.info("member %s channels set to %s by the API", result["id"], result["channels"])
    return jsonify(result)
