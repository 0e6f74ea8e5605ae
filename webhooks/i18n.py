"""The web pages' language (issue 21), with flask-babel over the one catalogue (relay/translations/,
relay/render/i18n.py).

Which language a page speaks, first that applies:
1. the choice made with the switch on every page (`/language/<code>`), remembered in the `relay_lang` cookie;
2. the member the page is for: the signed-in member, or the member of a signed preference link
   (`use_member_language`), in their own `language`;
3. the browser's Accept-Language;
4. English.
Times are shown in the signed-in (or linked) member's time zone, else UTC."""
from __future__ import annotations

from typing import NoReturn

from babel import Locale
from flask import Blueprint, Flask, g, redirect, request
from flask_babel import Babel, get_locale, get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, default_exceptions

from relay.guard import KIND_NAMES  # each kind's English catalogue id (said with gettext)
from relay.render import i18n

from .auth import current_member, safe_next_path

COOKIE = "relay_lang"
DIGEST_FREQUENCIES = {"daily": _l("daily"), "weekly": _l("weekly")}
# Stored values shown on pages, by kind: `{{ value|label("notice_kind") }}` says them in the reader's language
# (an unknown value is shown as stored). Add a kind here rather than a dictionary in a view.
VALUE_LABELS = {
    "notice_kind": {"new_case": _l("new case"), "guideline": _l("guideline"), "announcement": _l("announcement"),
                    "correction": _l("correction")},
    "notice_status": {"draft": _l("draft"), "scheduled": _l("scheduled"), "sending": _l("sending"),
                      "sent": _l("sent"), "cancelled": _l("cancelled"), "expired": _l("expired"),
                      "paused": _l("paused"), "stopped": _l("stopped")},
    "severity": {"routine": _l("routine"), "urgent": _l("urgent")},
    "visibility": {"public": _l("public"), "members": _l("members only")},
    "role": {"member": _l("member"), "coordinator": _l("coordinator"), "admin": _l("admin"),
             "contributor": _l("contributor")},
}
# The HTTP error pages (webhooks/app.py): a title and a sentence per status, in the reader's language.
HTTP_ERRORS = {
    400: (_l("Bad request"), _l("This request could not be understood. Go back, reload the page and try again.")),
    401: (_l("Sign in"), _l("Sign in to see this page.")),
    403: (_l("Not allowed"), _l("Your account may not see or do this.")),
    404: (_l("Not found"), _l("There is nothing at this address. The link may be old or mistyped.")),
    405: (_l("Not allowed here"), _l("This address does not take that kind of request.")),
    413: (_l("Too large"), _l("What you sent is too large.")),
    429: (_l("Too many requests"), _l("Too many requests from your address. Wait a minute and try again.")),
    500: (_l("Something went wrong"), _l("relay could not answer this request. Try again in a moment.")),
}
COOKIE_MAX_AGE = 365 * 24 * 3600
blueprint = Blueprint("language", __name__)


def use_member_language(language: str | None, timezone: str | None = None) -> None:
    """The page is for this member (a signed link): speak their language, show their time zone."""
    g.page_language, g.page_timezone = language, timezone


def error_text(error: BaseException) -> str:
    """A core error's message in the page's language (relay/model/translatable.py; plain English when the
    error is not a translatable one)."""
    return i18n.say(page_language(), error)


def page_language() -> str:
    return str(get_locale() or i18n.DEFAULT_LANGUAGE)


def refuse(code: int, error: BaseException | str) -> NoReturn:
    """`abort(code)` for a refusal a reader sees: the English stays the description (logs, the API's `detail`),
    and the words in the reader's language ride along for the error page or the API's `message`.
    `error` is a core error (said with `error_text`) or a message already translated with `_()`."""
    english = str(error) if isinstance(error, BaseException) else error
    exc: HTTPException = default_exceptions[code](description=english)
    exc.reader_text = error_text(error) if isinstance(error, BaseException) else error  # type: ignore[attr-defined]
    raise exc


def http_error_words(exc: HTTPException) -> tuple[str, str]:
    """The title and the message of an error page (or of the API's `message`) in the reader's language: the
    view's own words when it gave them (`refuse`, or a description it translated), else the status's."""
    title, sentence = HTTP_ERRORS.get(exc.code or 500, (exc.name, exc.description))
    own = getattr(exc, "reader_text", None)
    if own is None and exc.description and exc.description != type(exc).description and exc.code != 429:
        own = exc.description  # abort(404, _("…")) in a view; the rate limiter's "10 per 1 minute" is not words
    return str(title), str(own or sentence)


# The fields the guard names when a coordinator's own text seems to hold a patient identifier (issue 16).
GUARD_FIELDS = {"title": _l("title"), "body": _l("text"), "case title": _l("case title"),
                "chief complaint": _l("chief complaint"), "symptoms": _l("symptoms"),
                "exposure history": _l("exposure history"), "findings": _l("findings")}


def identifiers_text(exc, api: bool = False) -> str:
    """The words for IdentifiersFound (relay/guard/confirmation.py, whose own text names the CLI's flag): each
    finding's kind and field, in the reader's language, and the way on: the console's box to tick, or (`api`)
    the API's `confirm_identifiers` field, as a script writes it."""
    where = "; ".join(_("%(kind)s in the %(field)s", kind=guard_kind_name(f["kind"]),
                        field=str(GUARD_FIELDS.get(f["field"], f["field"]))) for f in exc.findings)
    if api:
        return _("It seems to contain patient identifiers (%(where)s): edit it, or send it again with %(field)s "
                 "if it is not about a patient.", where=where, field='"confirm_identifiers": true')
    return _("It seems to contain patient identifiers (%(where)s): edit it, or tick the box to confirm that it "
             "is not about a patient.", where=where)


def guard_kind_name(kind: str) -> str:
    """A kind of patient identifier (relay/guard/findings.py) in the page's language (an unknown kind as stored)."""
    return _(KIND_NAMES[kind]) if kind in KIND_NAMES else kind


def select_language() -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen and i18n.supported(chosen) == chosen:
        return chosen
    if g.get("page_language"):
        return i18n.supported(g.page_language)
    me = current_member() if request.blueprint not in ("twilio", "email", "api", "ops") else None
    if me is not None:
        return i18n.supported(me.language)
    return request.accept_languages.best_match(i18n.languages()) or i18n.DEFAULT_LANGUAGE


def select_timezone() -> str | None:
    if g.get("page_timezone"):
        return g.page_timezone
    me = current_member() if request.blueprint not in ("twilio", "email", "api", "ops") else None
    return me.timezone if me is not None else None


def configure(app: Flask) -> None:
    """flask-babel on the catalogue; the switch's route; `languages` and `current_language` in templates."""
    Babel(app, locale_selector=select_language, timezone_selector=select_timezone,
          default_translation_directories=str(i18n.TRANSLATIONS_DIR), default_domain=i18n.DOMAIN)
    app.register_blueprint(blueprint)

    @app.template_filter("when")
    def when(value) -> str:
        """A moment in the reader's language and time zone, to the minute, with the zone's name (the
        library's and the console's pages)."""
        if value is None:
            return ""
        return i18n.format_when(value, str(get_locale()), str(get_timezone()), "short-zone")

    @app.template_filter("label")
    def label(value: str, kind: str) -> str:
        return str(VALUE_LABELS[kind].get(value, value))

    @app.template_global("value_labels")
    def value_labels(kind: str) -> dict[str, str]:
        """A kind's labels in the reader's language (for a page's script that shows polled values)."""
        return {value: str(text) for value, text in VALUE_LABELS[kind].items()}

    @app.template_filter("guard_kind")
    def guard_kind(kind: str) -> str:
        """A kind of patient identifier (issue 16) in the reader's language."""
        return guard_kind_name(kind)

    @app.template_filter("digest_frequency")
    def digest_frequency(value: str) -> str:
        return str(DIGEST_FREQUENCIES.get(value, value))

    @app.context_processor
    def language_switch():
        return {"languages": language_names(), "current_language": str(get_locale() or i18n.DEFAULT_LANGUAGE)}


def language_names() -> dict[str, str]:
    """Each language named in itself (Babel's locale data), for the switch: a reader who cannot read
    the current page still finds theirs."""
    return {code: Locale.parse(code).get_display_name(code) or code for code in i18n.languages()}


@blueprint.get("/language/<code>")
def switch(code: str):
    """Remember the reader's choice in a cookie and go back to the page they were on."""
    target = safe_next_path(request.args.get("next")) or "/library/"
    response = redirect(target)
    if code not in i18n.languages():
        return response  # an unknown language: nothing remembered, the page stays as it was
    response.set_cookie(COOKIE, code, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                        secure=request.is_secure)
    return response
