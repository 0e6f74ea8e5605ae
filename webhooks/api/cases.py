"""/api/v1/cases: search, read, create (as a draft), publish or discard, close or reopen, and set the visibility
of cases.

Anyone reads public cases; a caller allowed case.read_members_only (any member's token) also reads
members-only ones; drafts are in nobody's library (staff reach them through publish). A case the
caller may not see is a 404 exactly like one that does not exist; so is a discarded draft, to everyone. (The discussion of a case is in
posts.py.)"""
from __future__ import annotations

from flask import current_app, jsonify, request

from relay.infra import audit
from relay.infra.db import transaction
from relay.library.cases import (
    CaseNotFound,
    CaseStateError,
    SearchError,
    close_case,
    create_case,
    discard_case,
    get_case,
    is_published,
    is_visible,
    parse_search_params,
    publish_case,
    search,
    set_visibility,
)
from relay.model.translatable import N_

from ..i18n import refuse as abort_with
from .core import (
    MAX_ID,
    actor,
    bad_request,
    blueprint,
    caller_roles,
    field,
    iso,
    json_object,
    log,
    may,
    requires,
)

CASE_FIELDS = ("chief_complaint", "symptoms", "exposure_history", "findings")


def case_json(case) -> dict:
    settings = current_app.extensions["relay"].settings
    return {"number": case.number, "code": case.code, "title": case.title, "status": case.status,
            "visibility": case.visibility, "chief_complaint": case.chief_complaint, "symptoms": case.symptoms,
            "exposure_history": case.exposure_history, "findings": case.findings, "views": case.views,
            "created_at": iso(case.created_at), "published_at": iso(case.published_at),
            "url": settings.case_url(case.code)}


def _number_in_range(number: str) -> None:
    """A number past the 32-bit column is no case (a 404, not a database error)."""
    text = number.strip().lstrip("#")
    text = text[1:] if text[:1] in ("C", "c") else text
    if text.isdigit() and (not text.isascii() or int(text) > MAX_ID):
        abort_with(404, CaseNotFound(N_("no case %(code)s"), code=repr(number)))


def case_by_number(session, number: str):
    """The case named by a number or code in a URL, drafts included (a discarded one is not); 404 if there is
    none."""
    _number_in_range(number)
    try:
        return get_case(session, number)
    except CaseNotFound as exc:
        abort_with(404, exc)


def visible_case(session, number: str):
    """The case if this caller may read it (staff also read drafts); else a 404."""
    case = case_by_number(session, number)
    if not is_published(case) and may("case.edit"):
        return case  # staff read the drafts they review
    if not is_visible(case, member=may("case.read_members_only")):
        abort_with(404, CaseNotFound(N_("no case %(code)s"), code=case.code))  # a draft, or members-only to a caller who is not a member
    return case


@blueprint.get("/cases")
@requires(None)
def list_cases():
    """Query: q (number, title or findings words), status (open|closed), from, to (YYYY-MM-DD), page
    -> {"cases": [...], "total", "page", "pages", "per_page"}, newest first."""
    try:
        params = parse_search_params(request.args)
    except SearchError as exc:
        abort_with(400, exc)
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        result = search(session, params, include_member_only=may("case.read_members_only"))
        return jsonify({"cases": [case_json(c) for c in result.cases], "total": result.total,
                        "page": result.page, "pages": result.pages, "per_page": result.per_page})


@blueprint.get("/cases/<number>")
@requires(None)
def get_case_json(number: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(case_json(visible_case(session, number)))


@blueprint.post("/cases")
@requires("case.create")
def create_case_route():
    """Create a draft from {title, chief_complaint, symptoms, exposure_history, findings, visibility};
    it enters the library when published."""
    services = current_app.extensions["relay"]
    data = json_object()
    title = field(data, "title", str)
    if not title or not title.strip():
        bad_request(400, N_('"title" is required'))
    fields = {name: field(data, name, str, "") for name in CASE_FIELDS}
    if len(title) > 300 or any(len(v) > 20_000 for v in fields.values()):
        bad_request(422, N_("title has at most %(title)s characters, each other field %(other)s"), title=300,
                    other="20,000")
    visibility = field(data, "visibility", str, "public")
    try:
        with transaction(services.sessions) as session:
            case = create_case(session, title, fields["chief_complaint"], fields["symptoms"],
                               fields["exposure_history"], fields["findings"], draft=True, visibility=visibility)
            audit.record(session, "case.create", f"case:{case.code}", actor())
            result = case_json(case)
    except ValueError as exc:
        abort_with(422, exc)
    log.info("case %s created as a draft by %s", result["code"], actor().label)
    return jsonify(result), 201, {"Location": f"/api/v1/cases/{result['code']}"}


@blueprint.post("/cases/<number>/publish")
@requires("case.publish")
def publish_case_route(number: str):
    """Draft -> open: the case enters the library. 422 for anything but a draft; 409 with the findings when its
    text seems to hold a patient identifier, unless {"confirm_identifiers": true} (issue 16)."""
    services = current_app.extensions["relay"]
    confirmed = bool(field(json_object(optional=True), "confirm_identifiers", bool, False))
    with transaction(services.sessions) as session:
        case = case_by_number(session, number)
        try:
            publish_case(session, case.code, actor=actor(), confirm_identifiers=confirmed)
        except CaseStateError as exc:
            abort_with(422, exc)
        result = case_json(case)
    log.info("case %s published by %s", result["code"], actor().label)
    return jsonify(result)


@blueprint.post("/cases/<number>/discard")
@requires("case.discard")
def discard_case_route(number: str):
    """Draft -> discarded (issue 15): it never enters the library and is a 404 from now on; its number is
    not reused. 422 for a case that is not a draft, or one already discarded. Audited `case.discard`."""
    services = current_app.extensions["relay"]
    _number_in_range(number)
    roles = caller_roles()
    with transaction(services.sessions) as session:
        try:  # the core checks the roles again: the route's guard is not the only one
            case = discard_case(session, number, roles=roles, actor=actor())
        except CaseNotFound as exc:
            abort_with(404, exc)
        except CaseStateError as exc:
            abort_with(422, exc)
        result = case_json(case)
    log.info("case %s discarded by %s", result["code"], actor().label)
    return jsonify(result)


@blueprint.post("/cases/<number>/close")
@requires("case.edit")
def close_case_route(number: str):
    """Open -> closed (new posts refused), or with {"reopen": true} closed -> open. 422 for a draft."""
    services = current_app.extensions["relay"]
    reopen = field(json_object(optional=True), "reopen", bool, False)
    with transaction(services.sessions) as session:
        case = case_by_number(session, number)
        try:
            close_case(session, case.code, reopen=bool(reopen), actor=actor())
        except CaseStateError as exc:
            abort_with(422, exc)
        result = case_json(case)
    log.info("case %s %s by %s", result["code"], result["status"], actor().label)
    return jsonify(result)


@blueprint.put("/cases/<number>/visibility")
@requires("case.edit")
def put_case_visibility(number: str):
    """Body {"visibility": "public" | "members"}."""
    services = current_app.extensions["relay"]
    visibility = field(json_object(), "visibility", str)
    if not visibility:
        bad_request(400, N_("expected JSON %(shape)s"), shape='{"visibility": "public" or "members"}')
    with transaction(services.sessions) as session:
        case = case_by_number(session, number)
        try:
            set_visibility(session, case.code, visibility, actor=actor())
        except ValueError as exc:
            abort_with(422, exc)
        result = case_json(case)
    return jsonify(result)
