"""Mail to RELAY_INTAKE_ADDRESS proposes a new case (relay/inbound/mail.py makes it a draft when the
sender is proven and may contribute); it is never a reply to a discussion."""
from relay.rules.verdict import COMMAND, Verdict

NAME = "intake"
DESCRIPTION = "the mail is addressed to the intake address (a proposed case)"


def check(ctx):
    if ctx.intake_address and ctx.intake_address in ctx.email.recipients:
        return Verdict(COMMAND, "mail to the intake address", command="intake")
    return None
