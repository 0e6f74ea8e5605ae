"""Reach (issue 20): the library's page image that counts a reader (relay/library/readership.py).

The console's Reach pages are in webhooks/reach_console.py."""
from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, request

from relay.infra.db import transaction
from relay.library.readership import count_reader as count_reader_core
from relay.library.readership import day_store_for

from .auth import current_member

blueprint = Blueprint("reach", __name__)

# a transparent 1x1 GIF
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@blueprint.record_once
def _make_store(state) -> None:
    state.app.extensions["relay-readers"] = day_store_for(state.app.extensions["relay"].settings)


@blueprint.get("/library/seen.gif")
def seen():
    """Counts the reader (once a day) and answers the image; never cached, so each day's first load
    reaches relay. The client address is the real client's behind a trusted proxy (webhooks/proxies.py)."""
    services = current_app.extensions["relay"]
    me = current_member()
    with transaction(services.sessions) as session:
        count_reader_core(session, current_app.extensions["relay-readers"], address=request.remote_addr or "",
                          user_agent=request.user_agent.string, member_id=me.id if me is not None else None)
    response = Response(PIXEL, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store, private"
    return response
