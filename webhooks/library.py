"""The case library's pages: every notice links here.

/library/ lists the published cases (search, status and date filters, 50 a page, newest first);
/library/cases/<code> shows a case's clinical summary and its whole discussion, and counts the view.
Drafts are never shown; members-only cases only to a signed-in member (webhooks/auth.py) — to anyone
else they are neither listed nor shown (404, the same answer as for a case that does not exist).
A signed-in member posts to the discussion from the case page (relay/discussion/web_posts.py): the form carries a
CSRF token and a one-time submission key, so a double submit makes one post."""
from __future__ import annotations

import secrets

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from relay.access.permissions import Forbidden
from relay.discussion.web_posts import WebPostError, decide_held, post_from_web
from relay.infra.db import transaction
from relay.library.cases import (
    CaseNotFound,
    SearchError,
    SearchParams,
    count_view,
    get_case,
    is_visible,
    parse_search_params,
    search,
)
from relay.library.guidelines import FIRST_CHANGES, GuidelineNotFound, current_version, get_guideline, list_guidelines
from relay.library.guidelines import count_view as count_guideline_view
from relay.library.images import case_images
from relay.library.media_store import MediaNotFound, media_store_for
from relay.library.readership import count_case_day_view
from relay.model.tables import CaseImage, Post, Thread
from relay.render.mail import case_summary, summary_text

from .auth import check_csrf, current_member, requires
from .i18n import error_text, refuse

blueprint = Blueprint("library", __name__)
blueprint.before_request(check_csrf)

CHANNEL_LABELS = {"sms": _l("SMS"), "email": _l("Email"), "web": _l("Web"), "console": _l("Console"),
                  "mms": _l("MMS"), "intake": _l("Intake"), "api": _l("API"), "cli": _l("Command line"),
                  "whatsapp": _l("WhatsApp")}
RELAY_WRITTEN = frozenset({FIRST_CHANGES})
CASE_STATUSES = {"open": _l("open"), "closed": _l("closed"), "draft": _l("draft")}


def signed_in_member():
    """The member viewing the page if they may read members-only cases, else None."""
    me = current_member()
    return me if me is not None and me.may("case.read_members_only") else None


@blueprint.app_template_filter("channel_label")
def channel_label(channel: str) -> str:
    return str(CHANNEL_LABELS.get(channel, (channel or "").upper()))


@blueprint.app_template_filter("relay_written")
def relay_written(text: str) -> str:
    """Stored text relay itself wrote (a default, marked with N_ where it is defined) in the reader's
    language; anything a person wrote is shown as written."""
    return gettext(text) if text in RELAY_WRITTEN else text


@blueprint.app_template_filter("case_status")
def case_status(status: str) -> str:
    """A case's status in the reader's language (the CSS class keeps the stored value)."""
    return str(CASE_STATUSES.get(status, status))


@blueprint.get("/library/")
def case_list():
    services = current_app.extensions["relay"]
    try:
        params = parse_search_params(request.args)
    except SearchError as exc:
        return render_template("case_list.html", result=None, params=SearchParams(q=request.args.get("q", "")[:200]),
                               error=error_text(exc), page_url=None), 400
    with services.sessions() as session:
        result = search(session, params, include_member_only=signed_in_member() is not None)

    def page_url(page: int) -> str:
        return url_for("library.case_list", **params.as_args(page=page))

    return render_template("case_list.html", result=result, params=params, error=None, page_url=page_url)


@blueprint.get("/library/cases/<code>")
def case_page(code: str, error: str | None = None, text: str = "", status: int = 200, held=None, notice: str = ""):
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            refuse(404, exc)
        if not is_visible(case, member=signed_in_member() is not None):
            refuse(404, gettext("no case %(code)s", code=case.code))  # the same answer as a case that does not exist
        if request.method == "GET":  # HEAD is not a view; nor is a re-shown form after a refused post
            count_view(session, case)
            count_case_day_view(session, case.id, request.user_agent.string)  # issue 20: views per day
        posts = session.scalars(
            select(Post).join(Thread).where(Thread.case_id == case.id)
            .options(selectinload(Post.author)).order_by(Post.id)).all()
        images = case_images(session, case)
        language = str(get_locale())
        summary = case_summary(case, language)  # labels in the reader's language, values as written
        # A new-case notice's post is the summary relay wrote with English labels: shown with the reader's.
        generated = {summary_text(case): summary_text(case, language)}
    return render_template("case.html", case=case, posts=posts, images=images, error=error, text=text, summary=summary,
                           generated=generated, submission=secrets.token_urlsafe(16).replace("_", "-"), held=held,
                           notice=notice), status


@blueprint.get("/library/cases/<code>/images/<int:image_id>")
@blueprint.get("/library/cases/<code>/images/<int:image_id>/<any(thumb):size>")
def case_image(code: str, image_id: int, size: str = "full"):
    """An image file of a case, under exactly the case page's rule: a draft or a members-only case
    (to a signed-out reader) answers 404 like a case that does not exist."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            refuse(404, exc)
        if not is_visible(case, member=signed_in_member() is not None):
            refuse(404, gettext("no case %(code)s", code=case.code))
        image = session.get(CaseImage, image_id) if image_id < 2**31 else None
        if image is None or image.case_id != case.id or image.status != "stored":
            refuse(404, gettext("no image %(id)s in %(code)s", id=image_id, code=case.code))
        name = image.thumbnail_name if size == "thumb" else image.stored_name
        content_type = "image/jpeg" if size == "thumb" else image.content_type
        public = case.visibility == "public"
    # short: the case may become members-only, and a shared cache must not keep serving it for long
    return image_file(services.settings, name, content_type, image_id,
                      "public, max-age=300" if public else "private, max-age=3600")


def image_file(settings, name: str, content_type: str, image_id: int, cache_control: str) -> Response:
    """A stored image file as a response (the library's and the console's image routes)."""
    try:
        data = media_store_for(settings).get(name)
    except MediaNotFound:
        refuse(404, gettext("the file of image %(id)s is missing", id=image_id))
    response = Response(data, mimetype=content_type)
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# ---------------------------------------------------------------- guidelines (public)


@blueprint.get("/library/guidelines")
@blueprint.get("/library/guidelines/")
def guideline_list():
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        found = list_guidelines(session)
        return render_template("guideline_list.html", guidelines=found)


@blueprint.get("/library/guidelines/<slug>")
@blueprint.get("/library/guidelines/<slug>/v<int:number>")
def guideline_page(slug: str, number: int | None = None):
    """The current version of a guideline (or version N), with every version and what it changed."""
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        try:
            guideline = get_guideline(session, slug)
        except GuidelineNotFound as exc:
            refuse(404, exc)
        latest = current_version(guideline)
        shown = latest if number is None else next((v for v in guideline.versions if v.number == number), None)
        if shown is None:
            refuse(404, gettext("%(slug)s has no version %(number)s", slug=guideline.slug, number=number))
        if request.method == "GET":
            count_guideline_view(session, guideline)
        return render_template("guideline.html", guideline=guideline, shown=shown, latest=latest,
                               versions=sorted(guideline.versions, key=lambda v: v.number, reverse=True))




@blueprint.post("/library/cases/<code>/posts")
@requires("case.post")
def post_to_case(code: str):
    services = current_app.extensions["relay"]
    me = current_member()
    text = request.form.get("text") or ""
    try:
        result = post_from_web(services, me.id, code, text, request.form.get("submission") or "")
    except CaseNotFound as exc:
        refuse(404, exc)
    except Forbidden as exc:
        refuse(403, exc)
    except WebPostError as exc:
        return case_page(code, error=error_text(exc), text=text[:5000], status=400)
    if result.post_id is None and result.held_code:  # issue 16: held by the patient-information guard
        return case_page(code, text=text[:5000], held=result)
    return redirect(url_for("library.case_page", code=result.case_code) + f"#post-{result.post_id}")


@blueprint.post("/library/cases/<code>/held/<hold_code>")
@requires("case.post")
def decide_held_post(code: str, hold_code: str):
    """The author's decision on their held post: send it as written, or drop it (issue 16)."""
    services = current_app.extensions["relay"]
    try:
        result = decide_held(services, current_member().id, hold_code, request.form.get("decision") or "")
    except Forbidden as exc:
        refuse(403, exc)
    except WebPostError as exc:
        return case_page(code, error=error_text(exc), status=400)
    if result.outcome == "guard:released":
        return redirect(url_for("library.case_page", code=code) + "#posts-end")
    notice = {"guard:dropped": gettext("Your held post was dropped; nothing was relayed."),
              "closed_case": gettext("The case is closed; the held post was not relayed."),
              }.get(result.outcome,
                    gettext("No held post of yours has this code (it may have been sent, dropped or expired)."))
    return case_page(code, notice=notice, status=200 if result.outcome == "guard:dropped" else 404)
