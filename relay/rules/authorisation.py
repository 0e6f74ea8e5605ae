"""Reject posts from members whose account may not post (inactive, or no posting role)."""
from relay.access.permissions import ALLOWED
from relay.rules.verdict import REJECT, Verdict

NAME = "authorisation"
DESCRIPTION = "the member may not post to case discussions"

POSTING_ROLES = ALLOWED["case.post"]  # one permission table for SMS, email, web and API


def check(ctx):
    if not ctx.member_active:
        return Verdict(REJECT, "member is inactive", reply="not_authorised")
    if not (ctx.member_roles & POSTING_ROLES):
        return Verdict(REJECT, "member has no posting role", reply="not_authorised")
    return None
