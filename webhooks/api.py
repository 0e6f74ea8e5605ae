"""JSON API under /api/v1/: a member's channel choice and notices (create, preview, send or schedule,
correct, status) behind a bearer RELAY_API_TOKEN (without one configured those routes answer 503
rather than being open), and the SMS segment preview (open: it reveals nothing, but rate limited
per client address)."""
from __future__ import annotations

import functools
import hmac
import logging

from flask import Blueprint, abort, current_app, jsonify, request

from relay.audit import Actor
from relay.db import transaction
from relay.members import RowError, find_member, set_channels
from relay.segments import count_segments

log = logging.getLogger("relay.web.api")
API_ACTOR = Actor("api-token", "api")  # the shared RELAY_API_TOKEN names no one
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


# Ids and case numbers are 32-bit integer columns: a larger one in a URL or body is simply not there
# (PostgreSQL would refuse the query, and the answer would be a misleading 503).
MAX_ID = 2**31 - 1


def _find_member(session, who: str):
    text = who.strip()
    if text.isdigit() and not text.isascii():
        return None  # '²' or '١': str.isdigit() yet not a number int() reads
    return find_member(session, who)


@blueprint.get("/members/<who>")
@token_required
def get_member(who: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        member = _find_member(session, who)
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
        member = _find_member(session, who)
        if member is None:
            abort(404, f"no member {who!r}")
        try:
            set_channels(member, data["channels"])
        except RowError as exc:
            abort(422, str(exc))
        result = _member_json(member)
    log.info("member %s channels set to %s by the API", result["id"], result["channels"])
    return jsonify(result)


# ---------------------------------------------------------------- cases and their posts
# A valid bearer token counts as a member: members-only cases are listed and readable; drafts never.

def _case_json(case) -> dict:
    settings = current_app.extensions["relay"].settings
    return {"number": case.number, "code": case.code, "title": case.title, "status": case.status,
            "visibility": case.visibility, "chief_complaint": case.chief_complaint, "symptoms": case.symptoms,
            "exposure_history": case.exposure_history, "findings": case.findings, "views": case.views,
            "created_at": _iso(case.created_at), "published_at": _iso(case.published_at),
            "url": settings.case_url(case.code)}


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _visible_case(session, number: str):
    from relay.cases import CaseNotFound, get_case, is_visible

    text = number.strip().lstrip("#")
    text = text[1:] if text[:1] in ("C", "c") else text
    if text.isdigit() and (not text.isascii() or int(text) > MAX_ID):
        abort(404, f"no case {number!r}")
    try:
        case = get_case(session, number)
    except CaseNotFound as exc:
        abort(404, str(exc))
    if not is_visible(case, member=True):
        abort(404, f"no case {case.code}")  # a draft is not in the library yet
    return case


@blueprint.get("/cases")
@token_required
def list_cases():
    """Query: q (number, title or findings words), status (open|closed), from, to (YYYY-MM-DD), page
    -> {"cases": [...], "total", "page", "pages", "per_page"}, newest first."""
    from relay.cases import SearchError, parse_search_params, search

    try:
        params = parse_search_params(request.args)
    except SearchError as exc:
        abort(400, str(exc))
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        result = search(session, params, include_member_only=True)
        return jsonify({"cases": [_case_json(c) for c in result.cases], "total": result.total,
                        "page": result.page, "pages": result.pages, "per_page": result.per_page})


@blueprint.get("/cases/<number>")
@token_required
def get_case_json(number: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(_case_json(_visible_case(session, number)))


@blueprint.get("/cases/<number>/posts")
@token_required
def case_posts(number: str):
    """The whole discussion in order: each post's cleaned text, author (short name; null for a
    task-force notice), channel, kind and time."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from relay.models import Post, Thread

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        case = _visible_case(session, number)
        posts = session.scalars(select(Post).join(Thread).where(Thread.case_id == case.id)
                                .options(selectinload(Post.author)).order_by(Post.id)).all()
        return jsonify({"case": case.code, "posts": [
            {"id": p.id, "text": p.body, "author": p.author.short_name if p.author else None,
             "channel": p.channel, "kind": p.kind, "created_at": _iso(p.created_at)} for p in posts]})


# ---------------------------------------------------------------- guidelines (read-only)

def _version_json(settings, slug: str, version) -> dict:
    from relay.guidelines import guideline_url

    return {"number": version.number, "title": version.title, "changes": version.changes,
            "published_at": _iso(version.published_at),
            "author": version.author.short_name if version.author else None,
            "url": guideline_url(settings, slug, version.number)}


@blueprint.get("/guidelines")
@token_required
def list_guidelines_json():
    """Every guideline with its current version, the most recently changed first."""
    from relay.guidelines import current_version, guideline_url, list_guidelines

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify({"guidelines": [
            {"slug": g.slug, "title": g.title, "url": guideline_url(services.settings, g.slug),
             "current": _version_json(services.settings, g.slug, current_version(g))}
            for g in list_guidelines(session)]})


@blueprint.get("/guidelines/<slug>")
@token_required
def get_guideline_json(slug: str):
    """A guideline: its current text, and every version (newest first) with what it changed."""
    from relay.guidelines import GuidelineNotFound, current_version, get_guideline, guideline_url

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
    from relay.models import Case
    from relay.notice_plan import channels_of, link, list_names
    from relay.notices import delivery_counts

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
    from relay.cases import CaseNotFound
    from relay.notices import NoticeError, NoticeNotFound, UnknownList

    return (CaseNotFound, NoticeError, NoticeNotFound, UnknownList)


def _notice_failure(exc: Exception):
    """A notice route's domain error as an HTTP answer: the notice in the path missing is a 404; any
    other rule it breaks (an unknown list, an expired or already sent notice, ...) a 422."""
    from werkzeug.exceptions import NotFound, UnprocessableEntity

    from relay.notices import NoticeNotFound

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
@token_required
def create_notice_route():
    """Create a draft from {kind, title, body, lists, case, severity, channels, expires_at|expires_in, corrects}."""
    from relay.notices import create_notice, parse_expiry, parse_time

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
                corrects_notice_id=corrects)
            result = _notice_json(session, notice)
    except _notice_errors() as exc:  # an unknown list, case or corrected notice is an error in the body
        abort(422, str(exc))
    log.info("notice %s (%s) created by the API", result["id"], result["kind"])
    return jsonify(result), 201, {"Location": f"/api/v1/notices/{result['id']}"}


@blueprint.get("/notices/<int:notice_id>")
@token_required
@_notice_id_fits
def get_notice_route(notice_id: int):
    """The notice with its deliveries counted by channel and status."""
    from relay.notices import get_notice

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(_notice_json(session, get_notice(session, notice_id)))


@blueprint.post("/notices/<int:notice_id>/preview")
@token_required
@_notice_id_fits
def preview_notice_route(notice_id: int):
    """Recipients per channel and country, SMS texts with segments and cost, sample emails."""
    from relay.preview import preview_notice

    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(preview_notice(session, services.settings, notice_id).as_dict())


@blueprint.post("/notices/<int:notice_id>/send")
@token_required
@_notice_id_fits
def send_notice_route(notice_id: int):
    """Send now, or schedule with {"at": "<ISO time>"}."""
    from relay.notices import get_notice, parse_time, schedule_notice, send_notice

    services = current_app.extensions["relay"]
    at = _field(_json_object(optional=True), "at", str)
    if at:
        with transaction(services.sessions) as session:
            notice = schedule_notice(session, notice_id, parse_time(at), actor=API_ACTOR)
            return jsonify(_notice_json(session, notice)), 202
    result = send_notice(services, notice_id, actor=API_ACTOR)
    with services.sessions() as session:
        body = _notice_json(session, get_notice(session, notice_id))
    body["queued"] = {"recipients": result.recipients, "sms": result.sms, "email": result.emails}
    return jsonify(body), 202


@blueprint.post("/notices/<int:notice_id>/correct")
@token_required
@_notice_id_fits
def correct_notice_route(notice_id: int):
    """Send {"text": "..."} as a correction to exactly those who received the notice."""
    from relay.corrections import correct_notice
    from relay.notices import get_notice

    services = current_app.extensions["relay"]
    text = _field(_json_object(), "text", str)
    if not text or not text.strip():
        abort(400, 'expected JSON {"text": "..."}')
    result = correct_notice(services, notice_id, text, actor=API_ACTOR)
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
        document = json.loads((Path(__file__).parent / "openapi.json").read_text(encoding="utf-8"))
        current_app.extensions["relay-openapi"] = document
    return jsonify(document)
