"""STOP / START / HELP words, matched only as the whole message in any case, before authorisation
so that anyone can always stop. They are commands, never relayed into a discussion."""
from __future__ import annotations

from .verdict import COMMAND, Verdict

NAME = "keywords"
DESCRIPTION = "the message is an opt-out, opt-in or help keyword"

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword_of(body: str) -> str | None:
    """'stop', 'start', 'help' or None. Whitespace and trailing punctuation are forgiven."""
    word = (body or "").strip().rstrip(".!").strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def check(ctx):
    word = keyword_of(ctx.message.body)
    if word is None:
        return None
    reply = {"stop": None, "start": "start", "help": "help"}[word]
    return Verdict(COMMAND, f"keyword {word.upper()}", command=word, reply=reply)
