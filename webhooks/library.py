"""The case library's pages: every notice links here (issue #4 builds the full library)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from relay.cases import CaseNotFound, get_case
from relay.models import Case, Post, Thread

blueprint = Blueprint("library", __name__)


@blueprint.get("/library/")
def case_list():
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        cases = session.scalars(select(Case).order_by(Case.number.desc()).limit(200)).all()
        return render_template("case_list.html", cases=cases)


@blueprint.get("/library/cases/<code>")
def case_page(code: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            abort(404, str(exc))
        posts = session.scalars(
            select(Post).join(Thread).where(Thread.case_id == case.id)
            .options(selectinload(Post.author)).order_by(Post.id)).all()
        return render_template("case.html", case=case, posts=posts)
