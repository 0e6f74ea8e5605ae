"""Reject senders who are not members, with a polite reply (none to an opt-out word)."""
from .verdict import REJECT, Verdict
from .keywords import keyword_of

NAME = "unknown_sender"
DESCRIPTION = "the sender is not a registered member"


def check(ctx):
    if ctx.member_id is not None:
        return None
    word = keyword_of(ctx.message.body)
    # A stranger texting STOP gets no reply: the provider already answered and blocked us.
    reply = None if word == "stop" else "unknown_sender"
    return Verdict(REJECT, "sender is not a member", reply=reply)
