"""Outbound text, rendered from templates/ per channel and language, and fitted to the SMS limit."""
from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateNotFound

from relay.model.channels import SMS_MAX_CHARS
from relay.render import i18n
from relay.render.environment import environment

__all__ = ["SMS_MAX_CHARS", "fit_sms", "render_sms"]


def render_sms(templates_dir: Path, name: str, language: str, **context) -> str:
    """Render templates/sms/<language>/<name>.txt in the language's environment (its catalogue),
    falling back to English for a language relay does not speak."""
    language = i18n.supported(language)
    for lang in (language, i18n.DEFAULT_LANGUAGE):
        try:
            template = environment(str(templates_dir), lang).get_template(f"sms/{lang}/{name}.txt")
        except TemplateNotFound:
            continue
        return template.render(**context).strip()
    raise TemplateNotFound(f"sms/en/{name}.txt")


def fit_sms(text: str, more_url: str = "", limit: int = SMS_MAX_CHARS,
            language: str = i18n.DEFAULT_LANGUAGE) -> str:
    """Shorten `text` to the provider's limit, pointing at `more_url` for the rest (in `language`)."""
    if len(text) <= limit:
        return text
    tail = "… " + i18n.translate(language, "(full text: %(url)s)", url=more_url) if more_url else "…"
    return text[: limit - len(tail)].rstrip() + tail
