"""The coordinator console under /console/: compose a notice, preview it, send or schedule it, watch
its deliveries; create, review and publish (or discard) cases; import and edit members; the emergency hold.

A thin shell: every change goes through the relay core (notices, cases, members, hold), every page
is role-checked through relay.access.permissions (webhooks/auth.requires), every form carries a CSRF token,
and the actor recorded in the audit trail is the signed-in member (source "console")."""
from __future__ import annotations

import csv
import io
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from relay.access.permissions import Forbidden
from relay.discussion import holding
from relay.guard import scan
from relay.guard.confirmation import IdentifiersFound
from relay.infra.audit import recent
from relay.infra.db import transaction
from relay.library.black_out import black_out, parse_boxes
from relay.library.cases import (
    CaseNotFound,
    CaseStateError,
    close_case,
    create_case,
    discard_case,
    draft_condition,
    get_case,
    publish_case,
    published_condition,
    set_visibility,
)
from relay.library.images import (
    ImageRefused,
    add_case_image,
    case_images,
    clean_image,
    held_images,
    release_image,
)
from relay.members import directory as members_core
from relay.members.consent import whatsapp_consent
from relay.model.tables import Case, CaseImage, Member, MemberList, Membership, Notice
from relay.notices import acks
from relay.notices.audience import CHANNELS
from relay.notices.lifecycle import (
    KINDS,
    SEVERITIES,
    NoticeError,
    NoticeNotFound,
    NoticeStateError,
    UnknownList,
    cancel_notice,
    create_notice,
    get_notice,
    notice_fields,
    parse_expiry,
    parse_time,
    parse_window,
    schedule_notice,
    send_notice,
    stop_notice,
)
from relay.notices.preview import preview_notice
from relay.notices.status import failed_deliveries, live_counts, rate_limited_until
from relay.outbound import hold
from relay.render.i18n import N_

from .auth import check_csrf, current_member, requires
from .i18n import error_text, identifiers_text, refuse
from .library import image_file

log = logging.getLogger("relay.web.console")
blueprint = Blueprint("console", __name__, url_prefix="/console")
blueprint.before_request(check_csrf)

MAX_CSV_BYTES = 1024 * 1024


def _services():
    return current_app.extensions["relay"]


def _actor():
    return current_member().actor("console")


def _confirmed() -> bool:
    """The form's "send it anyway: not about a patient" box (issue 16)."""
    return request.form.get("confirm_identifiers") == "on"


def _message(title: str, message: str, status: int):
    return render_template("console/message.html", title=title, message=message), status


# ---------------------------------------------------------------- home and hold


@blueprint.get("/")
@requires("notice.read")
def home():
    with _services().sessions() as session:
        notices = list(session.scalars(select(Notice).order_by(Notice.id.desc()).limit(25)))
        drafts = list(session.scalars(select(Case).where(draft_condition()).order_by(Case.number.desc())))
        state = hold.state(session)
    return render_template("console/home.html", notices=notices, drafts=drafts, hold=state)


@blueprint.post("/hold")
@requires("hold.toggle")
def toggle_hold():
    action = request.form.get("action")
    reason = (request.form.get("reason") or "").strip()
    if action == "on":
        hold.hold_on(_services(), _actor(), reason)
    elif action == "off":
        hold.hold_off(_services(), _actor(), reason)
    else:
        return _message(_("Hold"), _("Choose to hold or to resume sending."), 400)
    return redirect(url_for("console.home"))


# ---------------------------------------------------------------- held messages (issue 16)


@blueprint.get("/held")
@requires("held.decide")
def held_page(message: str = "", status: int = 200):
    """Members' messages the patient-information guard holds, each masked (the identifiers replaced by their kind)."""
    with _services().sessions() as session:
        rows = [(held, holding.masked_body(held), session.get(Member, held.member_id), session.get(Case, held.case_id))
                for held in holding.waiting(session)]
    return render_template("console/held.html", rows=rows, message=message), status


@blueprint.post("/held/<int:held_id>")
@requires("held.decide")
def decide_held_route(held_id: int):
    me = current_member()
    try:
        result = holding.decide_as_coordinator(_services(), held_id, request.form.get("decision") or "",
                                               _actor(), me.roles)
    except Forbidden:
        abort(403)
    except ValueError as exc:
        return held_page(error_text(exc), 400)
    text = {"guard:released": _("Released: posted and relayed."), "guard:dropped": _("Dropped."),
            "closed_case": _("The case is closed; nothing was relayed.")}.get(result.outcome,
                                                                              _("That message is no longer held."))
    return held_page(text, 200 if result.outcome in ("guard:released", "guard:dropped") else 404)


# ---------------------------------------------------------------- notices


def _compose_context(session, form=None, error=None):
    cases = list(session.scalars(select(Case).where(published_condition()).order_by(Case.number.desc()).limit(200)))
    lists = list(session.scalars(select(MemberList.name).order_by(MemberList.name)))
    return dict(cases=cases, lists=lists, kinds=[k for k in KINDS if k != "correction"], severities=SEVERITIES,
                channels=CHANNELS, form=form or {}, error=error, whatsapp_on=_services().settings.whatsapp_enabled,
                sent=list(session.scalars(select(Notice).where(Notice.status == "sent")
                                          .order_by(Notice.id.desc()).limit(50))))


@blueprint.get("/notices/new")
@requires("notice.create")
def compose():
    with _services().sessions() as session:
        form = {"case": request.args.get("case", ""), "kind": request.args.get("kind", "new_case")}
        return render_template("console/compose.html", **_compose_context(session, form))


@blueprint.post("/notices")
@requires("notice.create")
def create_notice_route():
    form = request.form
    me = current_member()
    kind = form.get("kind", "")
    try:
        with transaction(_services().sessions) as session:
            expires = (form.get("expires") or "").strip()
            corrects = (form.get("corrects") or "").strip()
            notice = create_notice(
                session, kind=kind, title=form.get("title", ""), body=form.get("body", ""),
                lists=form.getlist("lists") if kind != "correction" else (),
                case_code=(form.get("case") or None) if kind != "correction" else None,
                severity=form.get("severity") or None,
                channels=form.getlist("channels") if kind != "correction" else None,
                expires_at=parse_expiry(expires) if expires else None,
                corrects_notice_id=int(corrects) if corrects.isdigit() and kind == "correction" else None,
                created_by=me.id, ack_within=parse_window(form.get("ack_within")))
            notice_id = notice.id
    except (NoticeError, UnknownList, NoticeNotFound, CaseNotFound) as exc:
        with _services().sessions() as session:
            return render_template("console/compose.html",
                                   **_compose_context(session, form.to_dict(flat=True) | {
                                       "lists": form.getlist("lists"), "channels": form.getlist("channels")},
                                       error=error_text(exc))), 400
    return redirect(url_for("console.notice_page", notice_id=notice_id))


def _notice_or_404(session, notice_id: int) -> Notice:
    try:
        return get_notice(session, notice_id)
    except NoticeNotFound as exc:
        refuse(404, exc)


@blueprint.get("/notices/<int:notice_id>")
@requires("notice.read")
def notice_page(notice_id: int, error: str | None = None, status: int = 200):
    settings = _services().settings
    with _services().sessions() as session:
        notice = _notice_or_404(session, notice_id)
        case = session.get(Case, notice.case_id) if notice.case_id else None
        preview = preview_notice(session, settings, notice_id) if notice.status in ("draft", "scheduled") else None
        counts = live_counts(session, notice) if notice.status in ("sending", "sent", "stopped") else None
        failed = failed_deliveries(session, notice) if counts else []
        waiting_until = rate_limited_until(session, notice) if counts and counts["rate_limited"] else None
        held = hold.is_on(session)
        fields = notice_fields(notice, case) if preview is not None else {}
        ack_rows = acks.table(session, notice) if counts and acks.requests_ack(notice) else None
    found = _highlighted(fields)  # issue 16: the patient identifiers the guard sees, highlighted
    return render_template("console/notice.html", notice=notice, case=case, preview=preview, counts=counts,
                           failed=failed, error=error, held=held, rate_limited_until=waiting_until,
                           identifiers=found, ack_rows=ack_rows,
                           ack_counts=acks.counts(ack_rows) if ack_rows is not None else None), status


def _highlighted(fields: dict) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Each field with findings, as (field, [(text, kind or None), ...]) for <mark> in the page."""
    out = []
    for name, text in fields.items():
        findings = scan(text or "").findings
        if not findings:
            continue
        parts, last = [], 0
        for f in findings:
            parts += [(text[last:f.start], None), (text[f.start:f.end], f.kind)]
            last = f.end
        parts.append((text[last:], None))
        out.append((name, parts))
    return out


@blueprint.get("/notices/<int:notice_id>/counts")
@requires("notice.read")
def notice_counts(notice_id: int):
    with _services().sessions() as session:
        notice = _notice_or_404(session, notice_id)
        counts = live_counts(session, notice)
        counts["status"] = notice.status
        counts["hold"] = hold.is_on(session)
        if acks.requests_ack(notice):  # issue 17: acknowledged / waiting / escalated / unreachable, live
            counts["acks"] = acks.counts(acks.table(session, notice))
    response = jsonify(counts)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/notices/<int:notice_id>/acknowledgements.csv")
@requires("notice.acknowledgements")
def notice_acknowledgements_csv(notice_id: int):
    """issue 17: one row per recipient: state, acknowledgement time and channel, escalation steps taken."""
    with _services().sessions() as session:
        notice = _notice_or_404(session, notice_id)
        rows = acks.table(session, notice)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["member_id", "name", "state", "acknowledged_at", "channel", "reached_on",
                     "escalated_channels_at", "called_at"])
    for row in rows:
        steps = {step: at.isoformat() for step, at in row.steps.items()}
        writer.writerow([row.member_id, _csv_safe(row.name), row.state,
                         row.acknowledged_at.isoformat() if row.acknowledged_at else "", row.channel or "",
                         ";".join(row.reached_on), steps.get("channels", ""), steps.get("call", "")])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="notice-{notice_id}-acknowledgements.csv"',
        "Cache-Control": "no-store"})


def _csv_safe(text: str) -> str:
    """A name that a spreadsheet would run as a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@blueprint.post("/notices/<int:notice_id>/send")
@requires("notice.send")
def send_notice_route(notice_id: int):
    at = (request.form.get("at") or "").strip()
    try:
        if at:
            # <input type="datetime-local"> has no offset: the form says which one it means.
            offset = (request.form.get("tz") or "").strip()
            when = parse_time(at + offset if offset else at)
            with transaction(_services().sessions) as session:
                _notice_or_404(session, notice_id)
                schedule_notice(session, notice_id, when, actor=_actor(), confirm_identifiers=_confirmed())
        else:
            with _services().sessions() as session:
                _notice_or_404(session, notice_id)
            send_notice(_services(), notice_id, actor=_actor(), confirm_identifiers=_confirmed())
    except IdentifiersFound as exc:  # issue 16: edit the notice, or tick the confirmation and send again
        return notice_page(notice_id, error=identifiers_text(exc), status=409)
    except NoticeError as exc:
        return notice_page(notice_id, error=error_text(exc), status=409 if isinstance(exc, NoticeStateError) else 400)
    return redirect(url_for("console.notice_page", notice_id=notice_id))


@blueprint.post("/notices/<int:notice_id>/cancel")
@requires("notice.send")
def cancel_notice_route(notice_id: int):
    """Withdraw a draft or scheduled notice (relay.notices.lifecycle.cancel_notice); 409 once it went out."""
    try:
        with transaction(_services().sessions) as session:
            _notice_or_404(session, notice_id)
            cancel_notice(session, notice_id, actor=_actor())
    except NoticeError as exc:
        return notice_page(notice_id, error=error_text(exc), status=409)
    return redirect(url_for("console.notice_page", notice_id=notice_id))


@blueprint.post("/notices/<int:notice_id>/stop")
@requires("notice.stop")
def stop_notice_route(notice_id: int):
    """Stop a sent notice and its escalation (relay.notices.lifecycle.stop_notice); 409 unless it is sent."""
    try:
        with transaction(_services().sessions) as session:
            _notice_or_404(session, notice_id)
            stop_notice(session, notice_id, roles=current_member().roles, actor=_actor())
    except NoticeError as exc:
        return notice_page(notice_id, error=error_text(exc), status=409)
    return redirect(url_for("console.notice_page", notice_id=notice_id))


# ---------------------------------------------------------------- cases


@blueprint.get("/cases/")
@requires("case.create")
def cases():
    with _services().sessions() as session:
        rows = list(session.scalars(select(Case).where(Case.status != "discarded")
                                    .order_by(Case.number.desc()).limit(200)))
    return render_template("console/cases.html", cases=rows)


@blueprint.get("/cases/new")
@requires("case.create")
def new_case():
    return render_template("console/case_form.html", form={}, error=None)


@blueprint.post("/cases/")
@requires("case.create")
def create_case_route():
    form = request.form
    try:
        uploads = _uploads()
        with transaction(_services().sessions) as session:
            case = create_case(session, form.get("title", ""), chief_complaint=form.get("chief_complaint", "").strip(),
                               symptoms=form.get("symptoms", "").strip(),
                               exposure_history=form.get("exposure_history", "").strip(),
                               findings=form.get("findings", "").strip(), draft=True,
                               visibility=form.get("visibility") or "public")
            _file_uploads(session, case, uploads)
            code = case.code
    except ValueError as exc:  # ImageRefused too: nothing is kept, the form says why
        return render_template("console/case_form.html", form=form.to_dict(), error=error_text(exc)), 400
    log.info("case %s created as a draft by member %s", code, current_member().id)
    return redirect(url_for("console.case_page", code=code))


def _uploads() -> list[tuple[str, bytes]]:
    """The images of a case form (field "images"), each checked before anything is written, so a bad
    file refuses the whole form (ImageRefused names it) and leaves no half-made case behind."""
    found = []
    for upload in request.files.getlist("images"):
        if not upload or not upload.filename:
            continue
        data = upload.read()
        try:
            settings = _services().settings
            clean_image(data, settings.max_image_bytes, settings.image_max_pixels)
        except ImageRefused as exc:
            raise ImageRefused(N_("%(file)s: %(why)s"), file=upload.filename, why=error_text(exc)) from None
        found.append((upload.filename, data))
    return found


def _file_uploads(session, case, uploads: list[tuple[str, bytes]]) -> int:
    for filename, data in uploads:
        add_case_image(session, _services().settings, case, data, filename, "console")
    return len(uploads)


@blueprint.get("/cases/<code>")
@requires("case.create")
def case_page(code: str, error: str | None = None, status: int = 200):
    with _services().sessions() as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            refuse(404, exc)
        notices = list(session.scalars(select(Notice).where(Notice.case_id == case.id).order_by(Notice.id.desc())))
        images = case_images(session, case)
        held = held_images(session, case) if current_member().may("held.decide") else []
    return render_template("console/case.html", case=case, notices=notices, images=images, error=error,
                           held_images=held), status


@blueprint.post("/cases/<code>/images/<int:image_id>/release")
@requires("held.decide")
def release_image_route(code: str, image_id: int):
    """Issue 16: a coordinator releases an image the guard held (text burned into it) into the library."""
    try:
        with transaction(_services().sessions) as session:
            release_image(session, image_id, _actor(), current_member().roles)
    except Forbidden:
        abort(403)
    except ImageRefused as exc:
        return case_page(code, error=error_text(exc), status=404)
    return redirect(url_for("console.case_page", code=code))


@blueprint.post("/cases/<code>/images/<int:image_id>/black-out")
@requires("held.decide")
def black_out_route(code: str, image_id: int):
    """Issue 16: a coordinator blacks out what names a patient in a held image (the guard's findings, or the
    boxes given as left,top,width,height; ...); it enters the library when the guard finds nothing more."""
    try:
        boxes = parse_boxes(request.form.get("boxes", ""))
        with transaction(_services().sessions) as session:
            image = session.get(CaseImage, image_id) if 0 < image_id < 2**31 else None
            if image is None or image.case_id != get_case(session, code).id:
                raise ImageRefused(N_("no held or stored image %(id)d"), id=image_id)
            black_out(session, _services().settings, image_id, _actor(), current_member().roles, boxes)
    except Forbidden:
        abort(403)
    except CaseNotFound as exc:
        refuse(404, exc)
    except ImageRefused as exc:
        return case_page(code, error=error_text(exc), status=400)
    return redirect(url_for("console.case_page", code=code))


@blueprint.post("/cases/<code>/images")
@requires("case.edit")
def add_images(code: str):
    try:
        uploads = _uploads()
        with transaction(_services().sessions) as session:
            case = get_case(session, code)
            count = _file_uploads(session, case, uploads)
    except CaseNotFound as exc:
        refuse(404, exc)
    except ValueError as exc:
        return case_page(code, error=error_text(exc), status=400)
    log.info("%s image(s) filed under %s by member %s", count, code, current_member().id)
    return redirect(url_for("console.case_page", code=code))


@blueprint.get("/cases/<code>/images/<int:image_id>")
@blueprint.get("/cases/<code>/images/<int:image_id>/<any(thumb):size>")
@requires("case.create")
def case_image(code: str, image_id: int, size: str = "full"):
    """An image of any case, drafts included, for the coordinators reviewing it."""
    with _services().sessions() as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            refuse(404, exc)
        image = session.get(CaseImage, image_id) if image_id < 2**31 else None
        shown = ("stored", "held") if current_member().may("held.decide") else ("stored",)
        if image is None or image.case_id != case.id or image.status not in shown:
            refuse(404, _("no image %(id)s in %(code)s", id=image_id, code=case.code))
        name, content_type = ((image.thumbnail_name, "image/jpeg") if size == "thumb"
                              else (image.stored_name, image.content_type))
    return image_file(_services().settings, name, content_type, image_id, "private, max-age=300")


@blueprint.get("/audit")
@requires("audit.read")
def audit_page():
    action = (request.args.get("action") or "").strip()[:60] or None
    with _services().sessions() as session:
        events = recent(session, 200, action)
    return render_template("console/audit.html", events=events, action=action)


@blueprint.post("/cases/<code>/publish")
@requires("case.publish")
def publish(code: str):
    try:
        with transaction(_services().sessions) as session:
            case = publish_case(session, code, actor=_actor(), confirm_identifiers=_confirmed())
            code = case.code
    except CaseNotFound as exc:
        refuse(404, exc)
    except IdentifiersFound as exc:  # issue 16
        return case_page(code, error=identifiers_text(exc), status=409)
    except CaseStateError as exc:  # already published, or discarded
        return _message(_("Not published"), error_text(exc), 409)
    return redirect(url_for("console.case_page", code=code))


@blueprint.post("/cases/<code>/discard")
@requires("case.discard")
def discard(code: str):
    """Discard a draft (issue 15) once the form's confirmation box is ticked; the core checks the roles again
    and refuses anything but a never-published draft. It then is a 404 here too, so go back home."""
    if request.form.get("confirm") != "on":
        return case_page(code, error=_("Tick the box to confirm that this draft is to be discarded."), status=400)
    me = current_member()
    try:
        with transaction(_services().sessions) as session:
            code = discard_case(session, code, roles=me.roles, actor=_actor()).code
    except CaseNotFound as exc:
        refuse(404, exc)
    except Forbidden as exc:
        refuse(403, exc)
    except CaseStateError as exc:
        return _message(_("Not discarded"), error_text(exc), 409)
    log.info("case %s discarded by member %s", code, me.id)
    return redirect(url_for("console.home"))


@blueprint.post("/cases/<code>/close")
@requires("case.edit")
def close(code: str):
    """Close the case to new posts, or reopen it (form field reopen); a draft is refused (relay.library.cases)."""
    try:
        with transaction(_services().sessions) as session:
            case = close_case(session, code, reopen=bool(request.form.get("reopen")), actor=_actor())
            code = case.code
    except CaseNotFound as exc:
        refuse(404, exc)
    except CaseStateError as exc:  # a draft, or discarded
        return _message(_("Not changed"), error_text(exc), 409)
    return redirect(url_for("console.case_page", code=code))


@blueprint.post("/cases/<code>/visibility")
@requires("case.edit")
def visibility(code: str):
    try:
        with transaction(_services().sessions) as session:
            case = set_visibility(session, code, request.form.get("visibility", ""), actor=_actor())
            code = case.code
    except CaseNotFound as exc:
        refuse(404, exc)
    except ValueError as exc:
        return _message(_("Visibility"), error_text(exc), 400)
    return redirect(url_for("console.case_page", code=code))


# ---------------------------------------------------------------- members and lists


@blueprint.get("/members/")
@requires("member.read")
def members_page(report=None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:100]
    with _services().sessions() as session:
        query = select(Member).order_by(Member.name).limit(500)
        if q:
            like = f"%{q.lower()}%"
            query = query.where(func.lower(Member.name).like(like) | func.lower(Member.email).like(like)
                                | Member.phone.like(like))
        rows = list(session.scalars(query))
        lists = session.execute(select(MemberList.name, func.count(Membership.id)).outerjoin(Membership)
                                .group_by(MemberList.name).order_by(MemberList.name)).all()
    return render_template("console/members.html", members=rows, lists=lists, q=q, report=report), status


@blueprint.post("/members/import")
@requires("member.edit")
def import_members_route():
    upload = request.files.get("file")
    data = upload.read(MAX_CSV_BYTES + 1) if upload and upload.filename else (request.form.get("csv") or "").encode()
    if not data.strip():
        return members_page(report={"errors": [(0, _("choose a CSV file (or paste CSV text)"))], "created": 0,
                                    "updated": 0, "lists_created": []}, status=400)
    if len(data) > MAX_CSV_BYTES:
        return members_page(report={"errors": [(0, _("the file is larger than 1 MB"))], "created": 0, "updated": 0,
                                    "lists_created": []}, status=413)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return members_page(report={"errors": [(0, _("the file is not UTF-8 text"))], "created": 0, "updated": 0,
                                    "lists_created": []}, status=400)
    me = current_member()
    with transaction(_services().sessions) as session:
        report = members_core.import_members(session, text, grant_roles=me.may("member.roles"),
                                             sync_lists=bool(request.form.get("sync_lists")), actor=_actor())
    log.info("member %s imported members: %s new, %s updated, %s errors (%s refused: roles)", me.id, report.created,
             report.updated, len(report.errors), report.roles_refused)
    shown = {**report.__dict__, "errors": [(line, error_text(error)) for line, error in report.refused]}
    return members_page(report=shown, status=200 if not report.refused else 422)


def _member_or_404(session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        refuse(404, _("no member %(id)s", id=member_id))
    return member


@blueprint.get("/members/<int:member_id>")
@requires("member.read")
def member_page(member_id: int, error: str | None = None, status: int = 200):
    with _services().sessions() as session:
        member = _member_or_404(session, member_id)
        lists = list(session.scalars(select(MemberList.name).order_by(MemberList.name)))
        mine = set(session.scalars(select(MemberList.name).join(Membership)
                                   .where(Membership.member_id == member_id)))
        consent_log = whatsapp_consent(session, member_id)  # issue 19: how the member opted in (or out)
    return render_template("console/member.html", member=member, lists=lists, mine=mine, error=error,
                           whatsapp_on=_services().settings.whatsapp_enabled, whatsapp_log=consent_log), status


@blueprint.post("/members/<int:member_id>")
@requires("member.edit")
def edit_member(member_id: int):
    form = request.form
    try:
        with transaction(_services().sessions) as session:
            member = _member_or_404(session, member_id)
            before = members_core.snapshot(member)
            data = members_core.clean_row({
                "name": form.get("name", ""), "phone": form.get("phone", ""), "email": form.get("email", ""),
                "timezone": form.get("timezone", ""), "language": form.get("language", ""),
                "roles": (";".join(form.getlist("roles")) or member.roles) if current_member().may("member.roles")
                else member.roles, "lists": ";".join(form.getlist("lists")),
                "channels": ";".join(form.getlist("channels")), "whatsapp": form.get("whatsapp", "")})
            for key in ("name", "phone", "email", "timezone", "language", "roles", "sms_discussion",
                        "email_discussion", "whatsapp", "whatsapp_discussion"):
                setattr(member, key, data[key])
            member.short_name = members_core.short_name_of(data["name"])
            member.active = form.get("active") == "on"
            wanted = set(data["lists"])
            for membership in list(member.memberships):
                if membership.member_list.name not in wanted:
                    session.delete(membership)
            have = {m.member_list.name for m in member.memberships}
            for name in sorted(wanted - have):
                member_list, _created = members_core.get_or_create_list(session, name)
                session.add(Membership(list_id=member_list.id, member_id=member.id))
            members_core.record_member_change(session, member, before, _actor(), via="console")
    except members_core.RowError as exc:
        return member_page(member_id, error=error_text(exc), status=400)
    except Exception as exc:  # e.g. the phone or email of another member (a unique constraint)
        if "IntegrityError" not in type(exc).__name__:
            raise
        return member_page(member_id, error=_("another member already has that phone or email"), status=409)
    log.info("member %s edited by member %s", member_id, current_member().id)
    return redirect(url_for("console.member_page", member_id=member_id))
