"""Reject senders who are not members, with a polite reply: none to an opt-out word (the
provider has answered and blocks us), the help text to HELP (which must always be answered)."""
from relay.rules.keywords import keyword_of
from relay.rules.verdict import REJECT, Verdict

NAME = "unknown_sender"
DESCRIPTION = "the sender is not a registered member"


def check(ctx):
    if ctx.member_id is not None:
        return None
    word = keyword_of(ctx.text)
    reply = {"stop": None, "help": "help"}.get(word or "", "unknown_sender")
    return Verdict(REJECT, "sender is not a member", reply=reply)
