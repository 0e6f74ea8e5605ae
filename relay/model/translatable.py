"""Errors a reader sees, in the reader's language, raised by a core that knows no reader (issue 21).

The pattern: a core exception keeps its message as a catalogue id marked with `N_` and its variables apart
(`CaseNotFound(N_("no case %(code)s"), code="C7")`); `str(exc)` stays the English text (logs, the CLI, API
`detail`), and the shell that knows the reader says it in their language: `relay.render.i18n.say(language,
exc)` in the core and workers (SMS and email answers in the member's language), `webhooks.i18n.error_text(exc)`
on a page (the page's language).

Why this and not lazy strings or translated text: the core has no request and no reader (it must not import
Flask, and most errors are raised below relay/render/, which holds Babel), so nothing can be translated where
the error is raised; a lazy string would drag Babel's request context into the model. A message id plus its
parameters is plain data any layer may raise, every existing `except X as exc: str(exc)` keeps working
unchanged, and an exception still raised with plain English (not yet marked) is simply shown as written.
It lives in relay/model/ (the lowest layer) so that every core package may raise it; `Translatable` is a
mixin, so each error keeps its own base (`LookupError`, `ValueError`, `Exception`) and every `except`."""
from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - the gettext convention: marks a string for extraction only
    """Marks a catalogue string for `pybabel extract`; it is translated where the reader is known."""
    return message


class Translatable:
    """Mix into an exception: `Error(N_("… %(name)s …"), name=value)`. `message` is the catalogue id,
    `variables` its values (already words or numbers: format a repr or a list before raising)."""

    message: str
    variables: dict

    def __init__(self, message: str = "", **variables) -> None:
        self.message, self.variables = message, variables
        super().__init__(message % variables if variables else message)  # type: ignore[call-arg]
