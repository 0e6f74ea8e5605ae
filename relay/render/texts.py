"""Outbound text, rendered from templates/ per channel and language, and fitted to the SMS limit."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

# Twilio rejects a Body over 1,600 characters (error 21617); we shorten before sending.
SMS_MAX_CHARS = 1600


@lru_cache(maxsize=8)
def _environment(templates_dir: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=False,  # plain-text SMS; HTML pages use Flask's autoescaping environment
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_sms(templates_dir: Path, name: str, language: str, **context) -> str:
    """Render templates/sms/<language>/<name>.txt, falling back to English."""
    env = _environment(str(templates_dir))
    for lang in (language, "en"):
        try:
            template = env.get_template(f"sms/{lang}/{name}.txt")
        except TemplateNotFound:
            continue
        return template.render(**context).strip()
    raise TemplateNotFound(f"sms/en/{name}.txt")


def fit_sms(text: str, more_url: str = "", limit: int = SMS_MAX_CHARS) -> str:
    """Shorten `text` to the provider's limit, pointing at `more_url` for the rest."""
    if len(text) <= limit:
        return text
    tail = f"… (full text: {more_url})" if more_url else "…"
    return text[: limit - len(tail)].rstrip() + tail
