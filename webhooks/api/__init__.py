"""JSON API under /api/v1/: cases and their posts, notices (create, preview, send or schedule, correct,
status), lists and members, behind bearer tokens, and the SMS segment preview (open: it reveals nothing,
but rate limited per client address).

Who may call what is decided by relay/access/permissions.py, never here: a per-member token (relay tokens
create) carries its member's roles as they are at each request; the shared RELAY_API_TOKEN is a service
token with admin rights (audited as "api-token"); anonymous callers may read public cases only. A
missing, unknown or revoked token is a 401 with a WWW-Authenticate challenge, a known caller whose roles
do not allow the action a 403; each with a JSON error body and a log line (never the token)."""
from __future__ import annotations

import functools
import logging

from flask import Blueprint, abort, current_app, g, jsonify, request

from relay.access.api_tokens import ANONYMOUS, Caller, Refusal, authenticate
from relay.infra.db import transaction
from relay.infra.logs import mask_text, redact_path
from relay.members.directory import RowError, find_member, set_channels
from relay.access.permissions import allowed
from relay.render.segments import count_segments

log = logging.getLogger("relay.web.api")
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
CHALLENGE = 'Bearer realm="relay"'
SIGNED_IN = ""  # requires(SIGNED_IN): any valid token; the view decides the rest (a member's own record)


def _refuse(status: int, detail: str, challenge: str | None = None):
    """A 401 or 403 answered directly (not through abort), so the WWW-Authenticate header survives."""
    log.warning("%s %s: %s %s", request.method, redact_path(request.path), status, mask_text(detail))
    response = jsonify(error="Unauthorized" if status == 401 else "Forbidden", detail=detail)
    response.status_code = status
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def _caller() -> Caller | Refusal:
    """Who this request comes from, read once per request (the member's roles as they are now)."""
    if "relay_caller" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header:
            g.relay_caller = ANONYMOUS
        elif scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive (RFC 7235)
            g.relay_caller = Refusal("the Authorization header must be 'Bearer <token>'")
        else:
            services = current_app.extensions["relay"]
            with transaction(services.sessions) as session:  # it may note the token's last use
                g.relay_caller = authenticate(session, token.strip(), services.settings.api_token)
    return g.relay_caller


def _check(action: str | None):
    """None when the caller may go on; else the 401/403 answer. action None: anyone, even anonymous."""
    caller = _caller()
    if isinstance(caller, Refusal):
        return _refuse(401, caller.reason, CHALLENGE + ', error="invalid_token"')
    if action is None:
        return None
    if caller.anonymous:
        return _refuse(401, "a bearer token is needed: 'Authorization: Bearer <token>'", CHALLENGE)
    if action == SIGNED_IN:
        return None
    if not allowed(caller.roles, action):
        return _refuse(403, f"{caller.actor.label} may not {action} (roles: {', '.join(sorted(caller.roles)) or 'none'})")
    return None


def requires(action: str | None):
    """Guard a route with one action of relay.access.permissions (None: open to anonymous callers, whose
    token, if they give one, must still be valid)."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            refusal = _check(action)
            return refusal if refusal is not None else view(*args, **kwargs)

        return guarded

    return decorate


def may(action: str) -> bool:
    """Whether the (already authenticated) caller may do `action`: for answers that depend on it."""
    caller = _caller()
    return isinstance(caller, Caller) and allowed(caller.roles, action)


def actor():
    """The audit actor for this request: the token's member with source "api", or "api-token"."""
    return _caller().actor


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
            "email_hard_bounces": member.email_hard_bounces, "timezone": member.timezone,
            "language": member.language, "roles": sorted(member.role_set), "active": member.active}


# Ids and case numbers are 32-bit integer columns: a larger one in a URL or body is simply not there
# (PostgreSQL would refuse the query, and the answer would be a misleading 503).
MAX_ID = 2**31 - 1


def _find_member(session, who: str):
    text = who.strip()
    if text.isdigit() and not text.isascii():
        return None  # '²' or '١': str.isdigit() yet not a number int() reads
    return find_member(session, who)


def _member_or_refusal(session, who: str, action: str):
    """The member `who` if the caller may do `action` to them (staff), or to themselves (their own
    preferences); else a 403 — the same whether or not `who` exists, so a member learns nothing of others."""
    member = _find_member(session, who)
    caller = _caller()
    own = member is not None and member.id == caller.member_id and may("preferences.own")
    if not (may(action) or own):
        return None, _refuse(403, f"{caller.actor.label} may not {action}")
    if member is None:
        abort(404, f"no member {who!r}")
    return member, None


@blueprint.get("/members/<who>")
@requires(SIGNED_IN)
def get_member(who: str):
    """Staff read any member; a member reads their own record."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        member, refusal = _member_or_refusal(session, who, "member.read")
        return refusal or jsonify(_member_json(member))


@blueprint.put("/members/<who>/channels")
@requires(SIGNED_IN)
def put_channels(who: str):
    """Body: {"channels": ["sms", "email"]} — an empty list stops case discussion on every channel.
    Staff set anyone's; a member sets their own."""
    services = current_app.extensions["relay"]
    data = request.get_json(silent=True)
    with transaction(services.sessions) as session:
        member, refusal = _member_or_refusal(session, who, "member.edit")
        if refusal:
            return refusal
        if not isinstance(data, dict) or not isinstance(data.get("channels"), list) or \
                not all(isinstance(c, str) for c in data["channels"]):
            abort(400, 'expected JSON {"channels": ["sms", "email"]}')
        try:
            set_channels(member, data["channels"])
        except RowError as exc:
            abort(422, str(exc))
        result = _member_json(member)
    log.info("member %s channels set to %s by %s", result["id"], result["channels"], actor().label)
    return jsonify(result)


@blueprint.patch("/members/<who>")
@requires("member.edit")
def patch_member(who: str):
    """Change name, timezone, language, roles (admins only) or active; anything else is refused."""
    from relay.members.roster import update_member

    services = current_app.extensions["relay"]
    data = _json_object()
    if "roles" in data and not may("member.roles"):
        return _refuse(403, f"{actor().label} may not member.roles (only admins grant roles)")
    with transaction(services.sessions) as session:
        member = _find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        try:
            update_member(session, member, data, actor=actor())
        except TypeError as exc:
            abort(400, str(exc))
        except RowError as exc:
            abort(422, str(exc))
        result = _member_json(member)
    log.info("member %s changed (%s) by %s", result["id"], ", ".join(sorted(data)), actor().label)
    return jsonify(result)


# ---------------------------------------------------------------- lists

def _list_json(summary) -> dict:
    return {"name": summary.name, "members": summary.members, "created_at": _iso(summary.created_at)}


@blueprint.get("/lists")
@requires("list.read")
def get_lists():
    """Every list with its member count."""
    from relay.members.roster import list_summaries

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify({"lists": [_list_json(s) for s in list_summaries(session)]})


@blueprint.get("/lists/<name>")
@requires("list.read")
def get_list_route(name: str):
    from relay.members.roster import ListNotFound, list_summary

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            return jsonify(_list_json(list_summary(session, name)))
        except ListNotFound as exc:
            abort(404, str(exc))


def _membership_change(name: str, who: str, change):
    from relay.members.roster import ListNotFound, list_summary

    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        member = _find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        try:
            changed = change(session, name, member, actor=actor())
        except ListNotFound as exc:
            abort(404, str(exc))
        summary = list_summary(session, name)
        member_id = member.id
    log.info("member %s %s list %s by %s (changed: %s)", member_id,
             "added to" if change.__name__ == "add_to_list" else "removed from", name, actor().label, changed)
    return jsonify({"list": _list_json(summary), "member": member_id,
                    "member_of": change.__name__ == "add_to_list", "changed": changed})


@blueprint.put("/lists/<name>/members/<who>")
@requires("list.edit")
def put_membership(name: str, who: str):
    """Put the member on the list (nothing changes if they are on it already)."""
    from relay.members.roster import add_to_list

    return _membership_change(name, who, add_to_list)


@blueprint.delete("/lists/<name>/members/<who>")
@requires("list.edit")
def delete_membership(name: str, who: str):
    """Take the member off the list (nothing changes if they are not on it)."""
    from relay.members.roster import remove_from_list

    return _membership_change(name, who, remove_from_list)


# ---------------------------------------------------------------- cases and their posts
# Anyone reads public cases; a caller allowed case.read_members_only (any member's token) also reads
# members-only ones; drafts are in nobody's library (staff reach them through publish). A case the
# caller may not see is a 404 exactly like one that does not exist.

def _case_json(case) -> dict:
    settings = current_app.extensions["relay"].settings
    return {"number": case.number, "code": case.code, "title": case.title, "status": case.status,
            "visibility": case.visibility, "chief_complaint": case.chief_complaint, "symptoms": case.symptoms,
            "exposure_history": case.exposure_history, "findings": case.findings, "views": case.views,
            "created_at": _iso(case.created_at), "published_at": _iso(case.published_at),
            "url": settings.case_url(case.code)}


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _case_by_number(session, number: str):
    """The case named by a number or code in a URL, drafts included; 404 if there is none."""
    from relay.library.cases import CaseNotFound, get_case

    text = number.strip().lstrip("#")
    text = text[1:] if text[:1] in ("C", "c") else text
    if text.isdigit() and (not text.isascii() or int(text) > MAX_ID):
        abort(404, f"no case {number!r}")
    try:
        return get_case(session, number)
    except CaseNotFound as exc:
        abort(404, str(exc))


def _visible_case(session, number: str):
    from relay.library.cases import is_visible

    case = _case_by_number(session, number)
    if case.status == "draft" and may("case.edit"):
        return case  # staff read the drafts they review
    if not is_visible(case, member=may("case.read_members_only")):
        abort(404, f"no case {case.code}")  # a draft, or members-only to a caller who is not a member
    return case


@blueprint.get("/cases")
@requires(None)
def list_cases():
    """Query: q (number, title or findings words), status (open|closed), from, to (YYYY-MM-DD), page
    -> {"cases": [...], "total", "page", "pages", "per_page"}, newest first."""
    from relay.library.cases import SearchError, parse_search_params, search

    try:
        params = parse_search_params(request.args)
    except SearchError as exc:
        abort(400, str(exc))
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        result = search(session, params, include_member_only=may("case.read_members_only"))
        return jsonify({"cases": [_case_json(c) for c in result.cases], "total": result.total,
                        "page": result.page, "pages": result.pages, "per_page": result.per_page})


@blueprint.get("/cases/<number>")
@requires(None)
def get_case_json(number: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(_case_json(_visible_case(session, number)))


@blueprint.get("/cases/<number>/posts")
@requires(None)
def case_posts(number: str):
    """The whole discussion in order: each post's cleaned text, author (short name; null for a
    task-force notice), channel, kind and time."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from relay.model.tables import Post, Thread

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        case = _visible_case(session, number)
        posts = session.scalars(select(Post).join(Thread).where(Thread.case_id == case.id)
                                .options(selectinload(Post.author)).order_by(Post.id)).all()
        return jsonify({"case": case.code, "posts": [_post_json(p) for p in posts]})


def _post_json(p) -> dict:
    return {"id": p.id, "text": p.body, "author": p.author.short_name if p.author else None,
            "channel": p.channel, "kind": p.kind, "created_at": _iso(p.created_at)}


@blueprint.post("/cases/<number>/posts")
@requires("case.post")
def post_to_case(number: str):
    """A member's reply {"text": "..."}, relayed to the case's followers like an SMS or email reply.
    Send an Idempotency-Key header so that a retried request does not post twice."""
    from relay.discussion.api_posts import PostRefused, post_reply
    from relay.model.tables import Post

    services = current_app.extensions["relay"]
    caller = _caller()
    if caller.member_id is None:
        return _refuse(403, "the service token names no member: post with a member's own token")
    text = _field(_json_object(), "text", str)
    if text is None:
        abort(400, 'expected JSON {"text": "..."}')
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 100 and key.isascii() and key.isprintable()):
        abort(400, "Idempotency-Key must be 1 to 100 printable ASCII characters")
    with services.sessions() as session:
        case = _visible_case(session, number)
        case_id, code = case.id, case.code
    try:
        result = post_reply(services, case_id, caller.member_id, text, key)
    except PostRefused as exc:
        abort(422, str(exc))
    with services.sessions() as session:
        post = session.get(Post, result.post_id)
        body = {"case": code, "relayed_to": result.relayed_to, **_post_json(post)}
    if result.created:
        log.info("post %s on %s by %s, relayed to %s", post.id, code, actor().label, result.relayed_to)
    return jsonify(body), 201 if result.created else 200


CASE_FIELDS = ("chief_complaint", "symptoms", "exposure_history", "findings")


@blueprint.post("/cases")
@requires("case.create")
def create_case_route():
    """Create a draft from {title, chief_complaint, symptoms, exposure_history, findings, visibility};
    it enters the library when published."""
    from relay.infra import audit
    from relay.library.cases import create_case

    services = current_app.extensions["relay"]
    data = _json_object()
    title = _field(data, "title", str)
    if not title or not title.strip():
        abort(400, '"title" is required')
    fields = {name: _field(data, name, str, "") for name in CASE_FIELDS}
    if len(title) > 300 or any(len(v) > 20_000 for v in fields.values()):
        abort(422, "title has at most 300 characters, each other field 20,000")
    visibility = _field(data, "visibility", str, "public")
    try:
        with transaction(services.sessions) as session:
            case = create_case(session, title, fields["chief_complaint"], fields["symptoms"],
                               fields["exposure_history"], fields["findings"], draft=True, visibility=visibility)
            audit.record(session, "case.create", f"case:{case.code}", actor())
            result = _case_json(case)
    except ValueError as exc:
        abort(422, str(exc))
    log.info("case %s created as a draft by %s", result["code"], actor().label)
    return jsonify(result), 201, {"Location": f"/api/v1/cases/{result['code']}"}


@blueprint.post("/cases/<number>/publish")
@requires("case.publish")
def publish_case_route(number: str):
    """Draft -> open: the case enters the library. 422 for anything but a draft."""
    from relay.library.cases import CaseStateError, publish_case

    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        case = _case_by_number(session, number)
        try:
            publish_case(session, case.code, actor=actor())
        except CaseStateError as exc:
            abort(422, str(exc))
        result = _case_json(case)
    log.info("case %s published by %s", result["code"], actor().label)
    return jsonify(result)


@blueprint.put("/cases/<number>/visibility")
@requires("case.edit")
def put_case_visibility(number: str):
    """Body {"visibility": "public" | "members"}."""
    from relay.library.cases import set_visibility

    services = current_app.extensions["relay"]
    visibility = _field(_json_object(), "visibility", str)
    if not visibility:
        abort(400, 'expected JSON {"visibility": "public" or "members"}')
    with transaction(services.sessions) as session:
        case = _case_by_number(session, number)
        try:
            set_visibility(session, case.code, visibility, actor=actor())
        except ValueError as exc:
            abort(422, str(exc))
        result = _case_json(case)
    return jsonify(result)


# ---------------------------------------------------------------- guidelines (read-only)

def _version_json(settings, slug: str, version) -> dict:
    from relay.library.guidelines import guideline_url

    return {"number": version.number, "title": version.title, "changes": version.changes,
            "published_at": _iso(version.published_at),
            "author": version.author.short_name if version.author else None,
            "url": guideline_url(settings, slug, version.number)}


@blueprint.get("/guidelines")
@requires(None)
def list_guidelines_json():
    """Every guideline with its current version, the most recently changed first."""
    from relay.library.guidelines import current_version, guideline_url, list_guidelines

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify({"guidelines": [
            {"slug": g.slug, "title": g.title, "url": guideline_url(services.settings, g.slug),
             "current": _version_json(services.settings, g.slug, current_version(g))}
            for g in list_guidelines(session)]})


@blueprint.get("/guidelines/<slug>")
@requires(None)
def get_guideline_json(slug: str):
    """A guideline: its current text, and every version (newest first) with what it changed."""
    from relay.library.guidelines import GuidelineNotFound, current_version, get_guideline, guideline_url

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            guideline = get_guideline(session, slug)
        except GuidelineNotFound as exc:
            abort(404, str(exc))
        latest = current_version(guideline)
        return jsonify({"slug": guideline.slug, "title": guideline.title,
                        "url": guideline_url(services.settings, guideline.slug), "body": latest.body,
                        "current": _version_json(services.settings, guideline.slug, latest),
                        "versions": [_version_json(services.settings, guideline.slug, v)
                                     for v in sorted(guideline.versions, key=lambda v: v.number, reverse=True)]})


# ---------------------------------------------------------------- notices
# (_iso is shared with the case routes above.)

def _notice_json(session, notice) -> dict:
    from relay.model.tables import Case
    from relay.notices.audience import channels_of, link, list_names
    from relay.notices.lifecycle import delivery_counts

    case = session.get(Case, notice.case_id) if notice.case_id else None
    settings = current_app.extensions["relay"].settings
    counts = delivery_counts(session, notice)
    totals: dict[str, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            totals[status] = totals.get(status, 0) + n
    return {"id": notice.id, "kind": notice.kind, "title": notice.title, "body": notice.body,
            "severity": notice.severity, "channels": list(channels_of(notice)), "lists": list_names(notice),
            "case": case.code if case is not None else None, "link": link(settings, case), "status": notice.status,
            "expires_at": _iso(notice.expires_at), "scheduled_for": _iso(notice.scheduled_for),
            "sent_at": _iso(notice.sent_at), "corrects": notice.corrects_notice_id,
            "created_at": _iso(notice.created_at), "deliveries": counts, "totals": totals}


def _notice_id_fits(view):
    @functools.wraps(view)
    def checked(notice_id: int, **kwargs):
        if notice_id > MAX_ID:
            abort(404, f"no notice {notice_id}")
        return view(notice_id, **kwargs)

    return checked


def _notice_errors():
    from relay.library.cases import CaseNotFound
    from relay.notices.lifecycle import NoticeError, NoticeNotFound, UnknownList

    return (CaseNotFound, NoticeError, NoticeNotFound, UnknownList)


def _notice_failure(exc: Exception):
    """A notice route's domain error as an HTTP answer: the notice in the path missing is a 404; any
    other rule it breaks (an unknown list, an expired or already sent notice, ...) a 422."""
    from werkzeug.exceptions import NotFound, UnprocessableEntity

    from relay.notices.lifecycle import NoticeNotFound

    http = NotFound(str(exc)) if isinstance(exc, NoticeNotFound) else UnprocessableEntity(str(exc))
    return current_app.handle_user_exception(http)


def _register_notice_errors() -> None:
    for error in _notice_errors():
        blueprint.register_error_handler(error, _notice_failure)


def _json_object(optional: bool = False) -> dict:
    data = request.get_json(silent=True)
    if data is None and optional and not request.get_data():
        return {}
    if not isinstance(data, dict):
        abort(400, "expected a JSON object")
    return data


def _field(data: dict, name: str, kinds, default=None):
    value = data.get(name, default)
    if value is not None and not isinstance(value, kinds):
        abort(400, f"{name!r} has the wrong type")
    return value


@blueprint.post("/notices")
@requires("notice.create")
def create_notice_route():
    """Create a draft from {kind, title, body, lists, case, severity, channels, expires_at|expires_in, corrects}."""
    from relay.notices.lifecycle import create_notice, parse_expiry, parse_time

    services = current_app.extensions["relay"]
    data = _json_object()
    kind = _field(data, "kind", str)
    if not kind:
        abort(400, '"kind" is required: new_case, guideline, announcement or correction')
    lists = _field(data, "lists", (list, str), [])
    lists = lists.split(";") if isinstance(lists, str) else lists
    if not all(isinstance(name, str) for name in lists):
        abort(400, '"lists" must be list names')
    corrects = _field(data, "corrects", int)
    if isinstance(corrects, bool):
        abort(400, "'corrects' has the wrong type")
    if corrects is not None and not 0 <= corrects <= MAX_ID:
        abort(422, f"no notice {corrects}")
    try:
        expires_at = _field(data, "expires_at", str)
        expires_in = _field(data, "expires_in", str)
        with transaction(services.sessions) as session:
            notice = create_notice(
                session, kind=kind, title=_field(data, "title", str, ""),
                body=_field(data, "body", str, ""), lists=lists, case_code=_field(data, "case", str),
                severity=_field(data, "severity", str), channels=_field(data, "channels", (list, str)),
                expires_at=parse_time(expires_at) if expires_at else parse_expiry(expires_in) if expires_in else None,
                corrects_notice_id=corrects, created_by=_caller().member_id)
            result = _notice_json(session, notice)
    except _notice_errors() as exc:  # an unknown list, case or corrected notice is an error in the body
        abort(422, str(exc))
    log.info("notice %s (%s) created by %s", result["id"], result["kind"], actor().label)
    return jsonify(result), 201, {"Location": f"/api/v1/notices/{result['id']}"}


@blueprint.get("/notices/<int:notice_id>")
@requires("notice.read")
@_notice_id_fits
def get_notice_route(notice_id: int):
    """The notice with its deliveries counted by channel and status."""
    from relay.notices.lifecycle import get_notice

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(_notice_json(session, get_notice(session, notice_id)))


@blueprint.post("/notices/<int:notice_id>/preview")
@requires("notice.read")
@_notice_id_fits
def preview_notice_route(notice_id: int):
    """Recipients per channel and country, SMS texts with segments and cost, sample emails."""
    from relay.notices.preview import preview_notice

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(preview_notice(session, services.settings, notice_id).as_dict())


@blueprint.post("/notices/<int:notice_id>/send")
@requires("notice.send")
@_notice_id_fits
def send_notice_route(notice_id: int):
    """Send now, or schedule with {"at": "<ISO time>"}."""
    from relay.notices.lifecycle import get_notice, parse_time, schedule_notice, send_notice

    services = current_app.extensions["relay"]
    at = _field(_json_object(optional=True), "at", str)
    if at:
        with transaction(services.sessions) as session:
            notice = schedule_notice(session, notice_id, parse_time(at), actor=actor())
            return jsonify(_notice_json(session, notice)), 202
    result = send_notice(services, notice_id, actor=actor())
    with services.sessions() as session:
        body = _notice_json(session, get_notice(session, notice_id))
    body["queued"] = {"recipients": result.recipients, "sms": result.sms, "email": result.emails}
    return jsonify(body), 202


@blueprint.post("/notices/<int:notice_id>/correct")
@requires("notice.send")
@_notice_id_fits
def correct_notice_route(notice_id: int):
    """Send {"text": "..."} as a correction to exactly those who received the notice."""
    from relay.notices.corrections import correct_notice
    from relay.notices.lifecycle import get_notice

    services = current_app.extensions["relay"]
    text = _field(_json_object(), "text", str)
    if not text or not text.strip():
        abort(400, 'expected JSON {"text": "..."}')
    result = correct_notice(services, notice_id, text, created_by=_caller().member_id, actor=actor())
    with services.sessions() as session:
        body = _notice_json(session, get_notice(session, result.notice_id))
    body["queued"] = {"recipients": result.recipients, "sms": result.sms, "email": result.emails}
    return jsonify(body), 201, {"Location": f"/api/v1/notices/{result.notice_id}"}


_register_notice_errors()


# ---------------------------------------------------------------- the OpenAPI description (open)

@blueprint.get("/openapi.json")
def openapi_document():
    """This API described in OpenAPI 3.0 (webhooks/openapi.json), read once per app."""
    import json
    from pathlib import Path

    document = current_app.extensions.get("relay-openapi")
    if document is None:
        document = json.loads((Path(__file__).parent.parent / "openapi.json").read_text(encoding="utf-8"))
        current_app.extensions["relay-openapi"] = document
    return jsonify(document)
