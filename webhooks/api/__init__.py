"""JSON API under /api/v1/, one module per resource, all on one blueprint ("api", so the endpoint names
stay api.<view>):

  core.py        the blueprint, who the caller is (bearer tokens) and `requires`/`may`/`actor`, the 401/403
                 answers, the JSON helpers
  sms.py         /sms/preview, the SMS segment preview (open, rate limited per client address)
  members.py     /members/<who> (record, channels) and /lists (the roster: lists and their members)
  cases.py       /cases: search, read, create a draft, publish, visibility
  posts.py       /cases/<number>/posts: a case's discussion, and a member's reply to it
  guidelines.py  /guidelines (read-only)
  notices.py     /notices: create, read, preview, send or schedule, correct
  stats.py       /stats: a month's headline figures (issue 20)
  this module    /openapi.json, the API described in OpenAPI 3.0 (webhooks/openapi.json)

Who may call what is decided by relay/access/permissions.py, never here (see core.py)."""
from __future__ import annotations

import json
from pathlib import Path

from flask import current_app, jsonify

from . import cases, guidelines, members, notices, posts, sms, stats  # noqa: F401 (each registers its routes)
from .core import blueprint

__all__ = ["blueprint"]

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"  # webhooks/openapi.json (package data)


@blueprint.get("/openapi.json")
def openapi_document():
    """This API described in OpenAPI 3.0 (webhooks/openapi.json), read once per app."""
    document = current_app.extensions.get("relay-openapi")
    if document is None:
        document = json.loads(OPENAPI.read_text(encoding="utf-8"))
        current_app.extensions["relay-openapi"] = document
    return jsonify(document)
