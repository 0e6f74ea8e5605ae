"""Who may do what: one table of actions and the roles allowed each, used by the console, the API and the
SMS/email command rules alike, so the authorisation matrix is written down once and tested as a table.

Roles are those of relay.model.tables.ROLES, held on Member.roles ("coordinator;member"). Anonymous callers
have no roles at all."""
from __future__ import annotations

from typing import Iterable

from relay.model.translatable import N_, Translatable

MEMBER, COORDINATOR, ADMIN, CONTRIBUTOR = "member", "coordinator", "admin", "contributor"
_STAFF = frozenset({COORDINATOR, ADMIN})
_MEMBERS = frozenset({MEMBER, COORDINATOR, ADMIN, CONTRIBUTOR})
_DISCUSSANTS = frozenset({MEMBER, COORDINATOR, ADMIN})  # a contributor sends cases in, not replies

ALLOWED: dict[str, frozenset[str]] = {
    # reading
    "case.read_members_only": _MEMBERS,
    "member.read": _STAFF,
    "list.read": _STAFF,
    "notice.read": _STAFF,
    "notice.acknowledgements": _STAFF,  # issue 17: who acknowledged an urgent notice (names, times, channels)
    "audit.read": frozenset({ADMIN}),
    "outbox.read": frozenset({ADMIN}),  # the dev outbox: members' numbers, addresses and clinical text
    # taking part
    "case.post": _DISCUSSANTS,
    "case.intake": frozenset({CONTRIBUTOR, COORDINATOR, ADMIN}),
    "preferences.own": _MEMBERS,
    "notice.acknowledge": _MEMBERS,  # issue 17: a recipient confirms a notice (SMS, email link, call)
    # running the network
    "case.create": _STAFF,
    "case.publish": _STAFF,
    "case.discard": _STAFF,  # issue 15: a draft nobody should publish (an intake mail sent by mistake)
    "case.edit": _STAFF,
    "guideline.publish": _STAFF,
    "notice.create": _STAFF,
    "notice.send": _STAFF,
    "notice.stop": _STAFF,  # issue 17: stop a sent notice's escalation and cancel what still waits
    "list.edit": _STAFF,
    "member.edit": _STAFF,
    "member.roles": frozenset({ADMIN}),  # granting roles is admin-only: a coordinator cannot make an admin
    "hold.toggle": _STAFF,
    "held.decide": _STAFF,  # issue 16: see members' held messages (masked) and release or drop them
    "token.create": frozenset({ADMIN}),
    # issue 20: the network's figures (counts only) and publishing the headline ones
    "reach.read": _STAFF,
    "reach.publish": frozenset({ADMIN}),
}


class Forbidden(Translatable, Exception):
    """The caller is known but their roles do not allow the action (said in the reader's language:
    relay/model/translatable.py)."""


def allowed(roles: Iterable[str], action: str) -> bool:
    """True when any of `roles` may perform `action`; an unknown action is allowed to no one."""
    return bool(ALLOWED.get(action, frozenset()) & frozenset(roles))


def require(roles: Iterable[str], action: str) -> None:
    if not allowed(roles, action):
        raise Forbidden(N_("%(action)s needs one of the roles %(roles)s"), action=action,
                        roles=", ".join(sorted(ALLOWED.get(action, ()))) or "(none)")
