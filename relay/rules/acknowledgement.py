"""issue 17: an acknowledgement of an urgent notice, as the whole message: ACK, ACK 12, OK 12 (any case,
`#` and trailing `.`/`!` forgiven), or 1 when the member has exactly one open request (otherwise "1" is
an ordinary message). A command, never relayed into a discussion; relay/inbound/ack_commands.py records it."""
from __future__ import annotations

import re

from relay.rules.verdict import COMMAND, Verdict

NAME = "acknowledgement"
DESCRIPTION = "the message acknowledges an urgent notice (ACK 12, OK 12, ACK, or 1)"

_ACK = re.compile(r"(?:ACK|OK)\s*#?\s*(\d{1,9})|ACK")


def _normal(body: str) -> str:
    return " ".join((body or "").strip().rstrip(".!").strip().upper().split())


def parse(body: str) -> tuple[bool, int | None]:
    """(True, 12) for ACK 12 / OK 12; (True, None) for a bare ACK; (False, None) for anything else."""
    match = _ACK.fullmatch(_normal(body))
    if match is None:
        return False, None
    return True, int(match.group(1)) if match.group(1) else None


def might_be(body: str) -> bool:
    """Worth looking up the member's open requests for (ACK..., OK..., or 1)."""
    return parse(body)[0] or _normal(body) == "1"


def check(ctx):
    if ctx.member_id is None:
        return None
    is_ack, number = parse(ctx.message.body)
    if is_ack:
        return Verdict(COMMAND, "acknowledgement" + (f" of notice {number}" if number else ""), command="ack",
                       argument=str(number) if number else None)
    if _normal(ctx.message.body) == "1" and len(ctx.open_acks) == 1:
        return Verdict(COMMAND, f"acknowledgement of notice {ctx.open_acks[0]} (1)", command="ack",
                       argument=str(ctx.open_acks[0]))
    return None
