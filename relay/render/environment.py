"""The one Jinja environment for outbound text: SMS (templates/sms/…/*.txt) and mail
(templates/email/…/*.txt and *.html). Only .html templates are autoescaped; plain text (SMS and the
mail text parts) is not. HTML pages use Flask's own autoescaping environment."""
from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


@lru_cache(maxsize=8)
def environment(templates_dir: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
