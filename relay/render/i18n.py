"""The one message catalogue (issue 21): gettext through Babel, for the workers' SMS and mail and for the
web (flask-babel reads the same relay/translations/ directory; webhooks/i18n.py).

Strings are marked where they are written — `_("…")` / `ngettext(…)` in templates, `N_("…")` for a Python
constant translated later, `translate(language, "…")` and `translate_plural(language, "…", "…", n)` in the core — and `make translations`
extracts them (babel.cfg) into relay/translations/messages.pot, updates each language's messages.po and
compiles the .mo files, which are committed so a fresh clone runs (tests/unit/render/test_i18n.py fails
when a .mo is older than its .po). See docs/i18n.md.

Dates and numbers go through Babel's locale data in the reader's language and time zone (`format_when`)."""
from __future__ import annotations

from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.support import NullTranslations, Translations

from relay.model.translatable import N_, Translatable

__all__ = ["N_", "Translatable", "TranslatableError", "say", "translate", "translate_plural"]

TRANSLATIONS_DIR = Path(__file__).resolve().parent.parent / "translations"
DOMAIN = "messages"
DEFAULT_LANGUAGE = "en"


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """English (the source language) and every language with a catalogue in relay/translations/."""
    found = sorted(p.parent.parent.name for p in TRANSLATIONS_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (DEFAULT_LANGUAGE, *[lang for lang in found if lang != DEFAULT_LANGUAGE])


def supported(language: str | None) -> str:
    """`language` when relay speaks it (`ko`, `ko-KR` and `ko_KR` alike), else English."""
    if language:
        base = language.replace("-", "_").split("_")[0].lower()
        if base in languages():
            return base
    return DEFAULT_LANGUAGE


@lru_cache(maxsize=16)
def translator(language: str) -> NullTranslations:
    """The compiled catalogue of `language` (English and unknown languages: the messages as written)."""
    language = supported(language)
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [language], DOMAIN)


def translate(language: str, message: str, **variables) -> str:
    text = translator(language).gettext(message)
    return text % variables if variables else text


def translate_plural(language: str, singular: str, plural: str, num: int, **variables) -> str:
    """A count with the language's own plural forms (`%(num)d` is the count)."""
    return translator(language).ngettext(singular, plural, num) % {"num": num, **variables}


def _zone(name: str | tzinfo | None) -> tzinfo:
    if isinstance(name, tzinfo):
        return name
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _locale(language: str) -> Locale:
    try:
        return Locale.parse(supported(language))
    except UnknownLocaleError:
        return Locale.parse(DEFAULT_LANGUAGE)


def format_when(value: datetime, language: str, zone: str | tzinfo | None = None, format: str = "short-zone") -> str:
    """A moment in the reader's language and time zone (`zone` an IANA name; UTC when unknown).
    "short-zone": the locale's medium date, the 24-hour time and the zone ("Dec 6, 2026 14:05 UTC",
    "2026. 12. 6. 23:05 KST"); else a Babel format name or pattern."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    tz, locale = _zone(zone), _locale(language)
    if format == "short-zone":
        local = value.astimezone(tz)
        return (f"{babel_dates.format_date(local.date(), 'medium', locale=locale)} "
                f"{babel_dates.format_time(local, 'HH:mm', tzinfo=tz, locale=locale)} {local.tzname() or 'UTC'}")
    return babel_dates.format_datetime(value, format, tzinfo=tz, locale=locale)


def format_day(value: date | datetime, language: str, zone: str | tzinfo | None = None,
               format: str = "medium") -> str:
    """A date in the reader's language (a moment is first put in the reader's time zone)."""
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(_zone(zone)).date()
    return babel_dates.format_date(value, format, locale=_locale(language))


def format_number(value: int | float, language: str) -> str:
    return babel_numbers.format_decimal(value, locale=_locale(language))


def say(language: str, error: BaseException | Translatable) -> str:
    """An error's message in `language`: a `Translatable` one from the catalogue (relay/model/translatable.py),
    any other as written (English). A variable that is itself a Translatable error (the reason inside a
    row's error) is said in `language` too."""
    if isinstance(error, Translatable):
        return translate(language, error.message, **{name: say(language, value) if isinstance(value, Translatable)
                                                        else value for name, value in error.variables.items()})
    return str(error)


class TranslatableError(Translatable, ValueError):
    """A ValueError whose message is a catalogue string (marked with N_), kept apart from its variables so a
    page can say it in the reader's language (`in_language`); str() is the English, for logs."""

    def in_language(self, language: str) -> str:
        return say(language, self)
