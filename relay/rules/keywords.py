"""STOP / START / HELP words, matched only as the whole message in any case, before authorisation
so that anyone can always stop. They are commands, never relayed into a discussion.

The rest of the consent ladder (relay/members/ladder.py) is also a whole-message command: MUTE C123,
UNMUTE C123, PAUSE 24H, PAUSE 7D, DIGEST (or DIGEST <list>), URGENT ONLY. A message that only starts with one of these
words ("mute the alarm in C12 ...") is not a command and goes on to the discussion.

Issue 16: `SEND <code>` and `DROP <code>` (the six-character code of a message the patient-information guard
held, relay/discussion/holding.py) are whole-message commands from a member too."""
from __future__ import annotations

import re

from relay.rules.verdict import COMMAND, Verdict

NAME = "keywords"
DESCRIPTION = "the message is an opt-out, opt-in, help or preference keyword"

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_LADDER = (
    (re.compile(r"(UN)?MUTE\s+#?C?\s*(\d{1,9})"), lambda m: ("unmute" if m.group(1) else "mute", f"C{int(m.group(2))}")),
    (re.compile(r"PAUSE\s+(24\s*H|7\s*D)"), lambda m: ("pause", re.sub(r"\s", "", m.group(1)))),
    (re.compile(r"DIGEST(?:\s+([A-Z0-9][A-Z0-9_.-]{0,99}))?"), lambda m: ("digest", m.group(1))),
    (re.compile(r"URGENT\s*ONLY"), lambda m: ("urgent_only", None)),
)


_GUARD = re.compile(r"(SEND|DROP)\s+([A-Z0-9]{6})")


def _normal(body: str) -> str:
    return " ".join((body or "").strip().rstrip(".!").strip().upper().split())


def keyword_of(body: str) -> str | None:
    """'stop', 'start', 'help' or None. Whitespace and trailing punctuation are forgiven."""
    word = _normal(body)
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def ladder_command_of(body: str) -> tuple[str, str | None] | None:
    """('mute', 'C12'), ('pause', '24H'), ('digest', None), ... for a whole-message ladder command."""
    text = _normal(body)
    for pattern, read in _LADDER:
        match = pattern.fullmatch(text)
        if match:
            return read(match)
    return None


def guard_command_of(body: str) -> tuple[str, str] | None:
    """('guard_send', 'K7P3QX') or ('guard_drop', ...) for a whole-message SEND/DROP with a hold code."""
    match = _GUARD.fullmatch(_normal(body))
    if match is None:
        return None
    return ("guard_send" if match.group(1) == "SEND" else "guard_drop"), match.group(2)


def check(ctx):
    word = keyword_of(ctx.message.body)
    if word is not None:
        reply = {"stop": None, "start": "start", "help": "help"}[word]
        return Verdict(COMMAND, f"keyword {word.upper()}", command=word, reply=reply)
    found = ladder_command_of(ctx.message.body)
    if found is not None and ctx.member_id is not None:
        command, argument = found
        return Verdict(COMMAND, f"keyword {command.upper()}" + (f" {argument}" if argument else ""),
                       command=command, argument=argument)
    held = guard_command_of(ctx.message.body)
    if held is not None and ctx.member_id is not None:
        return Verdict(COMMAND, f"keyword {held[0].removeprefix('guard_').upper()} {held[1]}",
                       command=held[0], argument=held[1])
    return None
