"""issue 17: NO CALLS / CALLS OK, as the whole message from a member: whether the escalation of an urgent
notice may ring them (relay/notices/escalation.py). A command, never relayed."""
from __future__ import annotations

from relay.rules.verdict import COMMAND, Verdict

NAME = "call_preference"
DESCRIPTION = "the message is NO CALLS or CALLS OK"

WORDS = {"NO CALLS": "no_calls", "NOCALLS": "no_calls", "CALLS OK": "calls_ok", "CALLSOK": "calls_ok"}


def command_of(body: str) -> str | None:
    return WORDS.get(" ".join((body or "").strip().rstrip(".!").strip().upper().split()))


def check(ctx):
    command = command_of(ctx.message.body)
    if command is None or ctx.member_id is None:
        return None
    return Verdict(COMMAND, f"keyword {command.upper().replace('_', ' ')}", command=command)
