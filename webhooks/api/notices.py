"""/api/v1/notices: create a notice (a draft), read it with its deliveries counted, preview, send or
schedule it, cancel it before it goes out, stop it (and its escalation) after, and correct it. A notice missing from the path is a 404; any other rule a request breaks
(an unknown list, an expired or already sent notice, ...) a 422."""
from __future__ import annotations

import functools

from flask import current_app, jsonify
from werkzeug.exceptions import NotFound, UnprocessableEntity

from relay.guard.confirmation import IdentifiersFound
from relay.infra.db import transaction
from relay.library.cases import CaseNotFound
from relay.model.tables import Case
from relay.model.translatable import N_
from relay.notices import acks
from relay.notices.audience import channels_of, link, list_names
from relay.notices.corrections import correct_notice
from relay.notices.lifecycle import (
    NoticeError,
    NoticeNotFound,
    UnknownList,
    cancel_notice,
    create_notice,
    delivery_counts,
    get_notice,
    parse_expiry,
    parse_time,
    parse_window,
    schedule_notice,
    send_notice,
    stop_notice,
)
from relay.notices.preview import preview_notice

from ..i18n import error_text, identifiers_text
from ..i18n import refuse as abort_with
from .core import (
    MAX_ID,
    actor,
    bad_request,
    blueprint,
    caller_roles,
    current_caller,
    field,
    iso,
    json_object,
    log,
    requires,
)

NOTICE_ERRORS = (CaseNotFound, NoticeError, NoticeNotFound, UnknownList)


def _notice_json(session, notice) -> dict:
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
            "expires_at": iso(notice.expires_at), "scheduled_for": iso(notice.scheduled_for),
            "sent_at": iso(notice.sent_at), "corrects": notice.corrects_notice_id,
            "created_at": iso(notice.created_at), "deliveries": counts, "totals": totals,
            "ack_within_s": notice.ack_within_s, "escalation_step_s": notice.escalation_step_s}


def _notice_id_fits(view):
    @functools.wraps(view)
    def checked(notice_id: int, **kwargs):
        if notice_id > MAX_ID:
            abort_with(404, NoticeNotFound(N_("no notice %(id)s"), id=notice_id))
        return view(notice_id, **kwargs)

    return checked


def _notice_failure(exc: Exception):
    """A notice route's domain error as an HTTP answer: the notice in the path missing is a 404; any
    other rule it breaks (an unknown list, an expired or already sent notice, ...) a 422."""
    http = NotFound(str(exc)) if isinstance(exc, NoticeNotFound) else UnprocessableEntity(str(exc))
    http.reader_text = error_text(exc)  # type: ignore[attr-defined]  # the `message` in the caller's language
    return current_app.handle_user_exception(http)


for _error in NOTICE_ERRORS:
    blueprint.register_error_handler(_error, _notice_failure)


def _identifiers_found(exc: IdentifiersFound):
    """Issue 16: a notice, correction or case whose text seems to hold a patient identifier: 409 with the
    findings (field, kind, offsets; never the value) and a `message` in the caller's language. Edit it, or send
    again with "confirm_identifiers": true."""
    response = jsonify(error="Conflict", detail=str(exc), message=identifiers_text(exc, api=True),
                       findings=exc.findings)
    response.status_code = 409
    return response


blueprint.register_error_handler(IdentifiersFound, _identifiers_found)


def _confirmed(data: dict) -> bool:
    return bool(field(data, "confirm_identifiers", bool, False))


@blueprint.post("/notices")
@requires("notice.create")
def create_notice_route():
    """Create a draft from {kind, title, body, lists, case, severity, channels, expires_at|expires_in, corrects,
    ack_within, escalation_step}."""
    services = current_app.extensions["relay"]
    data = json_object()
    kind = field(data, "kind", str)
    if not kind:
        bad_request(400, N_('"kind" is required: %(kinds)s'), kinds="new_case, guideline, announcement or correction")
    lists = field(data, "lists", (list, str), [])
    lists = lists.split(";") if isinstance(lists, str) else lists
    if not all(isinstance(name, str) for name in lists):
        bad_request(400, N_('"lists" must be list names'))
    corrects = field(data, "corrects", int)
    if isinstance(corrects, bool):
        bad_request(400, N_("%(name)s has the wrong type"), name="'corrects'")
    if corrects is not None and not 0 <= corrects <= MAX_ID:
        abort_with(422, NoticeNotFound(N_("no notice %(id)s"), id=corrects))
    try:
        expires_at = field(data, "expires_at", str)
        expires_in = field(data, "expires_in", str)
        with transaction(services.sessions) as session:
            notice = create_notice(
                session, kind=kind, title=field(data, "title", str, ""),
                body=field(data, "body", str, ""), lists=lists, case_code=field(data, "case", str),
                severity=field(data, "severity", str), channels=field(data, "channels", (list, str)),
                expires_at=parse_time(expires_at) if expires_at else parse_expiry(expires_in) if expires_in else None,
                corrects_notice_id=corrects, created_by=current_caller().member_id,
                ack_within=parse_window(field(data, "ack_within", str)),
                escalation_step=parse_window(field(data, "escalation_step", str), "the escalation step"))
            result = _notice_json(session, notice)
    except NOTICE_ERRORS as exc:  # an unknown list, case or corrected notice is an error in the body
        abort_with(422, exc)
    log.info("notice %s (%s) created by %s", result["id"], result["kind"], actor().label)
    return jsonify(result), 201, {"Location": f"/api/v1/notices/{result['id']}"}


@blueprint.get("/notices/<int:notice_id>")
@requires("notice.read")
@_notice_id_fits
def get_notice_route(notice_id: int):
    """The notice with its deliveries counted by channel and status."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(_notice_json(session, get_notice(session, notice_id)))


@blueprint.get("/notices/<int:notice_id>/acknowledgements")
@requires("notice.acknowledgements")
@_notice_id_fits
def notice_acknowledgements_route(notice_id: int):
    """issue 17: who has acknowledged, who is waiting, escalated (by step) or unreachable, with times."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        notice = get_notice(session, notice_id)
        rows = acks.table(session, notice)
        return jsonify({"notice": notice.id, "ack_within_s": notice.ack_within_s, "counts": acks.counts(rows),
                        "members": [row.as_dict() for row in rows]})


@blueprint.post("/notices/<int:notice_id>/preview")
@requires("notice.read")
@_notice_id_fits
def preview_notice_route(notice_id: int):
    """Recipients per channel and country, SMS texts with segments and cost, sample emails."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify(preview_notice(session, services.settings, notice_id).as_dict())


@blueprint.post("/notices/<int:notice_id>/send")
@requires("notice.send")
@_notice_id_fits
def send_notice_route(notice_id: int):
    """Send now, or schedule with {"at": "<ISO time>"}."""
    services = current_app.extensions["relay"]
    data = json_object(optional=True)
    at = field(data, "at", str)
    if at:
        with transaction(services.sessions) as session:
            notice = schedule_notice(session, notice_id, parse_time(at), actor=actor(),
                                     confirm_identifiers=_confirmed(data))
            return jsonify(_notice_json(session, notice)), 202
    result = send_notice(services, notice_id, actor=actor(), confirm_identifiers=_confirmed(data))
    with services.sessions() as session:
        body = _notice_json(session, get_notice(session, notice_id))
    body["queued"] = {"recipients": result.recipients, "sms": result.sms, "email": result.emails,
                      **({"whatsapp": result.whatsapp} if result.whatsapp else {})}
    return jsonify(body), 202


@blueprint.post("/notices/<int:notice_id>/cancel")
@requires("notice.send")
@_notice_id_fits
def cancel_notice_route(notice_id: int):
    """Withdraw a draft or scheduled notice before it goes out (audited); 422 once it is sending or sent."""
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        body = _notice_json(session, cancel_notice(session, notice_id, actor=actor()))
    log.info("notice %s cancelled by %s", notice_id, actor().label)
    return jsonify(body)


@blueprint.post("/notices/<int:notice_id>/stop")
@requires("notice.stop")
@_notice_id_fits
def stop_notice_route(notice_id: int):
    """Stop a sent notice (issue 17): its escalation takes no further step (no other channel, call or report)
    and its deliveries still waiting are cancelled; those already out stay. Audited `notice.stop`; 422 for a
    notice that is not sent (a draft is cancelled instead) or already stopped."""
    services = current_app.extensions["relay"]
    roles = caller_roles()
    with transaction(services.sessions) as session:  # the core checks the roles again
        result = stop_notice(session, notice_id, roles=roles, actor=actor())
        body = _notice_json(session, get_notice(session, notice_id))
    body["cancelled"] = result.cancelled
    log.info("notice %s stopped by %s", notice_id, actor().label)
    return jsonify(body)


@blueprint.post("/notices/<int:notice_id>/correct")
@requires("notice.send")
@_notice_id_fits
def correct_notice_route(notice_id: int):
    """Send {"text": "..."} as a correction to exactly those who received the notice."""
    services = current_app.extensions["relay"]
    data = json_object()
    text = field(data, "text", str)
    if not text or not text.strip():
        bad_request(400, N_("expected JSON %(shape)s"), shape='{"text": "..."}')
    result = correct_notice(services, notice_id, text, created_by=current_caller().member_id, actor=actor(),
                            confirm_identifiers=_confirmed(data))
    with services.sessions() as session:
        body = _notice_json(session, get_notice(session, result.notice_id))
    body["queued"] = {"recipients": result.recipients, "sms": result.sms, "email": result.emails,
                      **({"whatsapp": result.whatsapp} if result.whatsapp else {})}
    return jsonify(body), 201, {"Location": f"/api/v1/notices/{result.notice_id}"}
