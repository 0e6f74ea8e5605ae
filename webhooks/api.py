"""JSON API under /api/v1/: a member's channel choice (bearer RELAY_API_TOKEN; without one
configured those routes answer 503 rather than being open) and the SMS segment preview (open: it
reveals nothing, but rate limited per client address)."""
from __future__ import annotations

import functools
import hmac
import logging

from flask import Blueprint, abort, current_app, jsonify, request

from relay.db import transaction
from relay.members import RowError, find_member, set_channels
from relay.segments import count_segments

log = logging.getLogger("relay.web.api")
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


def token_required(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        expected = current_app.extensions["relay"].settings.api_token
        if not expected:
            abort(503, "the API is off: set RELAY_API_TOKEN")
        given = request.headers.get("Authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), expected.encode())):
            abort(401, "a valid 'Authorization: Bearer <RELAY_API_TOKEN>' header is needed")
        return view(*args, **kwargs)

    return guarded


@blueprint.post("/sms/preview")
def sms_preview():
    """{"text": "..."} -> {"encoding", "characters", "units", "segments", "too_long"}."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        abort(400, 'expected JSON {"text": "..."}')
    return jsonify(count_segments(data["text"]).as_dict())


def _member_json(member) -> dict:
    return {"id": member.id, "name": member.name, "phone": member.phone, "email": member.email,
            "channels": list(member.channels), "sms_opted_out": member.sms_opted_out_at is not None,
            "email_opted_out": member.email_opted_out_at is not None,
            "email_suspended": member.email_suspended_at is not None,
            "email_hard_bounces": member.email_hard_bounces}


@blueprint.get("/members/<who>")
@token_required
def get_member(who: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        member = find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        return jsonify(_member_json(member))


@blueprint.put("/members/<who>/channels")
@token_required
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
