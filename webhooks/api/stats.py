"""/api/v1/stats (issue 20): the headline figures of a month as JSON, for the society's own reports —
active members, the countries of their numbers, the month's readers (relay/reach/headline.py). Staff
tokens (reach.read), whether or not an admin published them on the library's front page."""
from __future__ import annotations

from flask import current_app, jsonify, request

from relay.reach.headline import stats_for
from relay.reach.periods import PeriodError

from ..i18n import refuse as abort_with
from .core import blueprint, current_caller, requires


@blueprint.get("/stats")
@requires("reach.read")
def stats_json():
    month = request.args.get("month") or None
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            figures = stats_for(session, current_caller().roles, month)
        except PeriodError as exc:
            abort_with(400, exc)
    return jsonify(figures.as_dict())
