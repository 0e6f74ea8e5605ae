"""Reach (issue 20): the library's page image that counts a reader (relay/library/readership.py), and the
console's Reach page (/console/reach: charts for a period, their numbers as tables and CSV, the admin's
switch for the headline figures). A thin shell: the figures and their authorisation are in relay/reach/."""
from __future__ import annotations

import base64
from time import monotonic

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _

from relay.access.permissions import Forbidden
from relay.infra.db import transaction
from relay.library.cases import CaseNotFound, get_case
from relay.library.readership import count_reader as count_reader_core
from relay.library.readership import day_store_for
from relay.model.tables import Notice, utcnow
from relay.reach import headline, items
from relay.reach.charts import column_chart
from relay.reach.figures import CHARTS, reach_figures
from relay.reach.labels import labels_for
from relay.reach.page import charts, headers, series_chart, shown, to_csv
from relay.reach.periods import Period, PeriodError, parse_period
from relay.render import i18n

from .auth import check_csrf, current_member, requires
from .i18n import refuse

blueprint = Blueprint("reach", __name__)
blueprint.before_request(check_csrf)

# a transparent 1x1 GIF
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@blueprint.record_once
def _make_store(state) -> None:
    state.app.extensions["relay-readers"] = day_store_for(state.app.extensions["relay"].settings)


@blueprint.get("/library/seen.gif")
def seen():
    """Counts the reader (once a day) and answers the image; never cached, so each day's first load
    reaches relay. The client address is the real client's behind a trusted proxy (webhooks/proxies.py)."""
    services = current_app.extensions["relay"]
    me = current_member()
    with transaction(services.sessions) as session:
        count_reader_core(session, current_app.extensions["relay-readers"], address=request.remote_addr or "",
                          user_agent=request.user_agent.string, member_id=me.id if me is not None else None)
    response = Response(PIXEL, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store, private"
    return response


# ---------------------------------------------------------------- the console's Reach page


def _language() -> str:
    """The page's language as every page's (the switch's cookie, the member's own language, the browser's:
    webhooks/i18n.py), unless `?lang=` names one relay speaks (a link to the page in a given language)."""
    asked = request.args.get("lang", "")
    return asked if asked in i18n.languages() else str(get_locale() or i18n.DEFAULT_LANGUAGE)


def _render(language: str, template: str, **context) -> str:
    """The page wholly in `language`, its frame (navigation, switch) included."""
    with force_locale(language):
        return render_template(template, language=language, **context)


def _period_or_400() -> tuple[Period | None, PeriodError | None]:
    """The period asked for, or why it cannot be shown (said in the page's language by the caller)."""
    try:
        return parse_period(request.args, utcnow().date()), None
    except PeriodError as exc:
        return None, exc


@blueprint.get("/console/reach")
@requires("reach.read")
def reach_page():
    me = current_member()
    language = _language()
    labels = labels_for(language)
    period, refused = _period_or_400()
    error = i18n.say(language, refused) if refused else None
    if period is None:
        period = parse_period({}, utcnow().date())
    figures = _figures_or_403(me, period)
    with current_app.extensions["relay"].sessions() as session:
        published = headline.is_published(session)
    tables = {name: shown(figures.table(name), labels) for name in CHARTS}
    return _render(language, "console/reach.html", figures=figures, charts=charts(figures, labels), labels=labels,
                   error=error, published=published, tables=tables, chart_names=CHARTS,
                   args=period.as_args()), (400 if error else 200)


def _figures_or_403(me, period):
    """The period's figures, authorised in the core (reach.read): 403 with its reason otherwise."""
    with current_app.extensions["relay"].sessions() as session:
        try:
            return reach_figures(session, me.roles, period)
        except Forbidden as exc:
            refuse(403, exc)


@blueprint.get("/console/reach.csv")
@requires("reach.read")
def reach_csv():
    me = current_member()
    chart = request.args.get("chart", "")
    period, refused = _period_or_400()
    if refused:
        refuse(400, refused)
    if chart not in CHARTS:
        refuse(400, _("no chart %(chart)s: choose one of %(charts)s", chart=repr(chart), charts=", ".join(CHARTS)))
    figures = _figures_or_403(me, period)
    response = Response(to_csv(figures.table(chart)), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="reach-{chart}-{period.start}-{period.end}.csv"')
    return response


@blueprint.post("/console/reach/headline")
@requires("reach.publish")
def publish_headline():
    me = current_member()
    action = request.form.get("action")
    if action not in ("on", "off"):
        refuse(400, _("choose to publish (on) or to withdraw (off) the headline figures"))
    services = current_app.extensions["relay"]
    try:
        with transaction(services.sessions) as session:
            headline.publish(session, me.roles, me.actor("console"), action == "on")
    except Forbidden as exc:
        refuse(403, exc)
    current_app.extensions.pop("relay-reach-headline", None)  # this process shows the change at once
    return redirect(url_for("reach.reach_page"))


# ---------------------------------------------------------------- one case, one notice


@blueprint.get("/console/reach/cases/<code>")
@requires("reach.read")
def case_reach(code: str):
    me = current_member()
    language = _language()
    labels = labels_for(language)
    period, refused = _period_or_400()
    error = i18n.say(language, refused) if refused else None
    period = period or parse_period({}, utcnow().date())
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            case = get_case(session, code)
        except CaseNotFound as exc:
            refuse(404, exc)
        try:
            tables = [items.case_views(session, me.roles, case, period),
                      items.case_activity(session, me.roles, case, period)]
        except Forbidden as exc:
            refuse(403, exc)
        title = f"{case.code}: {case.title}"
    drawn = [(labels["case_views"], tables[0], series_chart(tables[0], labels["case_views"], labels, period)),
             (labels["case_activity"], tables[1], series_chart(tables[1], labels["case_activity"], labels, period))]
    return _render(language, "console/reach_item.html", title=title, drawn=drawn, labels=labels, headers=headers,
                   error=error, period=period, back=url_for("console.case_page", code=code)), (400 if error else 200)


@blueprint.get("/console/reach/notices/<int:notice_id>")
@requires("reach.read")
def notice_reach(notice_id: int):
    me = current_member()
    language = _language()
    labels = labels_for(language)
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        notice = session.get(Notice, notice_id) if notice_id < 2**31 else None
        if notice is None:
            refuse(404, _("no notice %(id)s", id=notice_id))
        try:
            table, bucket = items.notice_timeline(session, me.roles, notice)
        except Forbidden as exc:
            refuse(403, exc)
        title = f"#{notice.id} {notice.title or notice.kind}"
        sent = notice.sent_at
    name = labels["notice_timeline"] + (f" ({bucket} min)" if bucket > 1 else "")
    description = labels["desc_timeline"] % dict(title=name, sent=sent or "—", total=f"{sum(table.totals()):,}")
    drawn = [(name, table, column_chart(table.name, name, description, [row[0] for row in table.rows],
                                        [(labels.get(h, h), [row[i] for row in table.rows])
                                         for i, h in enumerate(table.headers) if i]))]
    return _render(language, "console/reach_item.html", title=title, drawn=drawn, labels=labels, headers=headers,
                   error=None, period=None, back=url_for("console.notice_page", notice_id=notice_id))


# ---------------------------------------------------------------- the library's headline figures

HEADLINE_SECONDS = 60.0  # a process reads the figures at most once a minute (the front page is busy)


@blueprint.app_context_processor
def _headline_context():
    return {"reach_headline": published_headline}


def published_headline():
    """The published headline figures for the library's front page, or None; cached a minute per app."""
    cache = current_app.extensions.setdefault("relay-reach-headline", {})
    now = monotonic()
    if cache.get("until", float("-inf")) <= now:
        with current_app.extensions["relay"].sessions() as session:
            cache["value"] = headline.public_headline(session)
        cache["until"] = now + HEADLINE_SECONDS
    return cache["value"]
