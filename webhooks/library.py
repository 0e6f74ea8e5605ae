"""The case library's pages: every notice links here.

/library/ lists the published cases (search, status and date filters, 50 a page, newest first);
/library/cases/<code> shows a case's clinical summary and its whole discussion, and counts the view.
Drafts are never shown; members-only cases only to a signed-in member (webhooks/auth.py) — to anyone
else they are neither listed nor shown (404, the same answer as for a case that does not exist).
A signed-in member posts to the discussion from the case page (relay/web_posts.py): the form carries a
CSRF token and a one-time submission key, so a double submit makes one post."""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from relay.cases import (CaseNotFound, SearchError, SearchParams, count_view, get_case, is_visible,
                         parse_search_params, search)
from relay.db import transaction
from relay.models import Post, Thread
from relay.permissions import Forbidden
from relay.web_posts import WebPostError, post_from_web

from .auth import check_csrf, current_member, requires

blueprint = Blueprint("library", __name__)
blueprint.before_request(check_csrf)

CHANNEL_LABELS = {"sms": "SMS", "email": "Email", "web": "Web", "console": "Console"}


def signed_in_member():
    """The member viewing the page if they may read members-only cases, else None."""
    me = current_member()
    return me if me is not None and me.may("case.read_members_only") else None


@blueprint.app_template_filter("channel_label")
def channel_label(channel: str) -> str:
    return CHANNEL_LABELS.get(channel, (channel or "").upper())


@blueprint.get("/library/")
def case_list():
    services = current_app.extensions["relay"]
    try:
        params = parse_search_params(request.args)
    except SearchError as exc:
        return render_template("case_list.html", result=None, params=SearchParams(q=request.args.get("q", "")[:200]),
                               error=str(exc), page_url=None), 400
    with services.sessions() as session:
        result = search(session, params, include_member_only=signed_in_member() is not None)

    def page_url(page: int) -> str:
        return url_for("library.case_list", **params.as_args(page=page))

    return render_template("case_list.html", result=result, params=params, error=None, page_url=page_url)


@blueprint.get("/library/cases/<code>")
def case_page(code: str, error: str | None = None, text: str = "", status: int = 200):
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            abort(404, str(exc))
        if not is_visible(case, member=signed_in_member() is not None):
            abort(404, f"no case {case.code}")  # the same answer as a case that does not exist
        if request.method == "GET":  # HEAD is not a view; nor is a re-shown form after a refused post
            count_view(session, case)
        posts = session.scalars(
            select(Post).join(Thread).where(Thread.case_id == case.id)
            .options(selectinload(Post.author)).order_by(Post.id)).all()
    return render_template("case.html", case=case, posts=posts, error=error, text=text,
                           submission=secrets.token_urlsafe(16).replace("_", "-")), status


@blueprint.post("/library/cases/<code>/posts")
@requires("case.post")
def post_to_case(code: str):
    services = current_app.extensions["relay"]
    me = current_member()
    text = request.form.get("text") or ""
    try:
        result = post_from_web(services, me.id, code, text, request.form.get("submission") or "")
    except CaseNotFound as exc:
        abort(404, str(exc))
    except Forbidden as exc:
        abort(403, str(exc))
    except WebPostError as exc:
        return case_page(code, error=str(exc), text=text[:5000], status=400)
    return redirect(url_for("library.case_page", code=result.case_code) + f"#post-{result.post_id}")
