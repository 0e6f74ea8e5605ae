"""/api/v1/cases/<number>/posts: read a case's discussion, and post a member's reply to it (relayed to the
case's followers like an SMS or email reply). Who sees which case is decided in cases.py."""
from __future__ import annotations

from flask import current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from relay.discussion.api_posts import PostRefused, post_reply
from relay.model.tables import Post, Thread
from relay.model.translatable import N_

from ..i18n import refuse as abort_with
from .cases import visible_case
from .core import (
    RequestRefused,
    actor,
    bad_request,
    blueprint,
    current_caller,
    field,
    iso,
    json_object,
    log,
    refuse,
    requires,
)


def _post_json(p) -> dict:
    return {"id": p.id, "text": p.body, "author": p.author.short_name if p.author else None,
            "channel": p.channel, "kind": p.kind, "created_at": iso(p.created_at)}


@blueprint.get("/cases/<number>/posts")
@requires(None)
def case_posts(number: str):
    """The whole discussion in order: each post's cleaned text, author (short name; null for a
    task-force notice), channel, kind and time."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        case = visible_case(session, number)
        posts = session.scalars(select(Post).join(Thread).where(Thread.case_id == case.id)
                                .options(selectinload(Post.author)).order_by(Post.id)).all()
        return jsonify({"case": case.code, "posts": [_post_json(p) for p in posts]})


@blueprint.post("/cases/<number>/posts")
@requires("case.post")
def post_to_case(number: str):
    """A member's reply {"text": "..."}, relayed to the case's followers like an SMS or email reply.
    Send an Idempotency-Key header so that a retried request does not post twice."""
    services = current_app.extensions["relay"]
    caller = current_caller()
    if caller.member_id is None:
        return refuse(403, RequestRefused(N_("the service token names no member: post with a member's own token")))
    data = json_object()
    text = field(data, "text", str)
    confirmed = bool(field(data, "confirm_identifiers", bool, False))  # issue 16: else 409 with the findings
    if text is None:
        bad_request(400, N_("expected JSON %(shape)s"), shape='{"text": "..."}')
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 100 and key.isascii() and key.isprintable()):
        bad_request(400, N_("%(header)s must be 1 to 100 printable ASCII characters"), header="Idempotency-Key")
    with services.sessions() as session:
        case = visible_case(session, number)
        case_id, code = case.id, case.code
    try:
        result = post_reply(services, case_id, caller.member_id, text, key, confirm_identifiers=confirmed)
    except PostRefused as exc:
        abort_with(422, exc)
    with services.sessions() as session:
        post = session.get(Post, result.post_id)
        body = {"case": code, "relayed_to": result.relayed_to, **_post_json(post)}
    if result.created:
        log.info("post %s on %s by %s, relayed to %s", post.id, code, actor().label, result.relayed_to)
    return jsonify(body), 201 if result.created else 200
