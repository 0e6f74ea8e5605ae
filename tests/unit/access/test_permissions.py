"""The permission table: staff run the network, members take part, anonymous callers do neither."""
from __future__ import annotations

import pytest

from relay.access.permissions import ALLOWED, Forbidden, allowed, require


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_anonymous_may_do_nothing_in_the_table(action):
    assert not allowed((), action)


@pytest.mark.parametrize("action", ["case.publish", "notice.send", "hold.toggle", "list.edit", "case.create"])
def test_members_cannot_publish_or_broadcast(action):
    assert not allowed(("member",), action)
    assert allowed(("coordinator", "member"), action)
    assert allowed(("admin",), action)


def test_members_read_member_only_cases_and_post():
    assert allowed(("member",), "case.read_members_only") and allowed(("member",), "case.post")


def test_only_admins_read_the_audit_trail_and_make_tokens():
    for action in ("audit.read", "token.create"):
        assert allowed(("admin",), action) and not allowed(("coordinator",), action)


def test_unknown_action_is_refused_with_a_reason():
    assert not allowed(("admin",), "launch.missiles")
    with pytest.raises(Forbidden, match="notice.send needs one of the roles admin, coordinator"):
        require(("member",), "notice.send")
