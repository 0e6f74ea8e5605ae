"""Delivery reports and complaints, and any mail to a bounce+… address, go to bounce handling
(relay/inbound/bounce_handling.py), which counts a report only for the delivery it proves."""
from relay.rules.automatic import is_bounce
from relay.rules.verdict import COMMAND, Verdict

NAME = "bounce"
DESCRIPTION = "the mail is a delivery report or complaint, or is addressed to a bounce address"


def check(ctx):
    if is_bounce(ctx.email) or ctx.to_bounce_address:
        return Verdict(COMMAND, "delivery report or mail to a bounce address", command="bounce")
    return None
