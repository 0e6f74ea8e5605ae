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

from babel import Locale
from flask import Blueprint, Flask, g, redirect, request
from flask_babel import Babel, get_locale, get_timezone
from flask_babel import lazy_gettext as _l

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
                      "paused": _l("paused")},
    "severity": {"routine": _l("routine"), "urgent": _l("urgent")},
    "visibility": {"public": _l("public"), "members": _l("members only")},
    "role": {"member": _l("member"), "coordinator": _l("coordinator"), "admin": _l("admin"),
             "contributor": _l("contributor")},
}
COOKIE_MAX_AGE = 365 * 24 * 3600
blueprint = Blueprint("language", __name__)


def use_member_language(language: str | None, timezone: str | None = None) -> None:
    """The page is for this member (a signed link): speak their language, show their time zone."""
    g.page_language, g.page_timezone = language, timezone


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
