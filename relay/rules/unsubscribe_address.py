"""Mail to unsubscribe+<token>@<our domain> is an unsubscribe request (RFC 2369 List-Unsubscribe
mailto), handled before anything else: it is not a reply, and a non-member may send it (issue 5)."""
from relay.rules.verdict import COMMAND, Verdict

NAME = "unsubscribe"
DESCRIPTION = "the mail is addressed to one of relay's unsubscribe+<token> addresses"


def check(ctx):
    for address in ctx.email.recipients:
        local, _, host = address.rpartition("@")
        if host == ctx.own_domain and local.startswith("unsubscribe+"):
            return Verdict(COMMAND, "unsubscribe by mail", command="unsubscribe", argument=local.split("+", 1)[1])
    return None
