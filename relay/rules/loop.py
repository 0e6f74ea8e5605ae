"""Discard messages from our own numbers, so the relay never talks to itself."""
from relay.rules.verdict import DISCARD, Verdict

NAME = "loop"
DESCRIPTION = "the sender is one of relay's own numbers"


def check(ctx):
    if ctx.message.sender in ctx.own_numbers:
        return Verdict(DISCARD, f"sent from our own number {ctx.message.sender}")
    return None
