"""The one Jinja environment for outbound text: SMS (templates/sms/…/*.txt) and mail
(templates/email/…/*.txt and *.html), one per language, with Jinja's i18n extension bound to that
language's catalogue (relay/render/i18n.py): `{{ _("…") }}` and `{{ ngettext("…", "…", n) }}` in a
template say the reader's language, and the filters `when`, `day` and `number` format with Babel.
Only .html templates are autoescaped; plain text (SMS and the mail text parts) is not. HTML pages
use Flask's own autoescaping environment, with the same catalogue through flask-babel."""
from __future__ import annotations

from functools import lru_cache, partial

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from relay.render import i18n


@lru_cache(maxsize=16)
def environment(templates_dir: str, language: str = i18n.DEFAULT_LANGUAGE) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translator(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(when=partial(_when, language), day=partial(_day, language),
                       number=partial(i18n.format_number, language=language))
    return env


def _when(language: str, value, zone=None, format: str = "short-zone") -> str:
    return i18n.format_when(value, language, zone, format)


def _day(language: str, value, zone=None, format: str = "medium") -> str:
    return i18n.format_day(value, language, zone, format)
