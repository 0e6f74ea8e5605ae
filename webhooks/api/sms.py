"""/api/v1/sms/preview: the SMS segment preview (open: it reveals nothing, but rate limited per client
address in webhooks/app.py)."""
from __future__ import annotations

from flask import jsonify, request

from relay.model.translatable import N_
from relay.render.segments import count_segments

from .core import bad_request, blueprint


@blueprint.post("/sms/preview")
def sms_preview():
    """{"text": "..."} -> {"encoding", "characters", "units", "segments", "too_long"}."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        bad_request(400, N_("expected JSON %(shape)s"), shape='{"text": "..."}')
    return jsonify(count_segments(data["text"]).as_dict())
