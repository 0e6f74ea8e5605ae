"""Discard a message already processed (a redelivered task; webhook retries stop at the edge)."""
from relay.rules.verdict import DISCARD, Verdict

NAME = "duplicate"
DESCRIPTION = "the inbound event was already processed"


def check(ctx):
    if ctx.already_processed:
        return Verdict(DISCARD, "already processed")
    return None
