"""The ordered rule table, each rule on its own and in order."""
from __future__ import annotations

import pytest

from relay.model.messages import InboundMessage
from relay.rules import ACCEPT, COMMAND, DISCARD, REJECT, RULES, RuleContext, decide
from relay.rules.keywords import keyword_of

OURS = "+15005550006"


def ctx(body="C1 hello", sender="+821012345602", member=True, active=True, roles=("member",),
        processed=False) -> RuleContext:
    message = InboundMessage("sms", "twilio", "SM1", sender, OURS, body)
    return RuleContext(message=message, member_id=7 if member else None, member_active=active,
                       member_roles=frozenset(roles) if member else frozenset(),
                       own_numbers=frozenset({OURS}), already_processed=processed)


def test_rule_order_is_the_documented_one():
    assert [r.NAME for r in RULES] == ["duplicate", "loop", "unknown_sender", "keywords", "authorisation"]
    assert all(r.DESCRIPTION for r in RULES)


@pytest.mark.parametrize("body,word", [
    ("STOP", "stop"), ("stop", "stop"), (" Stop ", "stop"), ("stop.", "stop"), ("STOPALL", "stop"),
    ("unsubscribe", "stop"), ("cancel", "stop"), ("END", "stop"), ("quit", "stop"), ("OPTOUT", "stop"),
    ("revoke", "stop"), ("START", "start"), ("yes", "start"), ("Unstop", "start"), ("HELP", "help"),
    ("info", "help"), ("STOP PLEASE", None), ("please stop", None), ("C1 stop", None), ("", None),
    ("stopping", None), ("HELP ME", None),
])
def test_keywords_match_only_the_whole_message(body, word):
    assert keyword_of(body) == word


def test_a_plain_post_from_a_member_is_accepted():
    decision = decide(ctx())
    assert decision.verdict.action == ACCEPT
    assert decision.fired == ("duplicate", "loop", "unknown_sender", "keywords", "authorisation")


def test_duplicate_comes_first():
    decision = decide(ctx(processed=True, body="STOP"))
    assert decision.verdict.action == DISCARD and decision.fired == ("duplicate",)


def test_our_own_number_is_a_loop():
    decision = decide(ctx(sender=OURS))
    assert decision.verdict.action == DISCARD and decision.fired[-1] == "loop"


def test_unknown_sender_gets_a_polite_reply():
    verdict = decide(ctx(member=False)).verdict
    assert verdict.action == REJECT and verdict.reply == "unknown_sender"


def test_unknown_sender_stop_gets_no_reply():
    verdict = decide(ctx(member=False, body="STOP")).verdict
    assert verdict.action == REJECT and verdict.reply is None


def test_stop_works_before_authorisation():
    verdict = decide(ctx(body="stop", active=False, roles=())).verdict
    assert verdict.action == COMMAND and verdict.command == "stop"


def test_inactive_member_cannot_post():
    verdict = decide(ctx(active=False)).verdict
    assert verdict.action == REJECT and verdict.reply == "not_authorised"


def test_member_without_a_posting_role_cannot_post():
    verdict = decide(ctx(roles=("observer",))).verdict
    assert verdict.action == REJECT


def test_unknown_sender_help_is_answered_with_help():
    verdict = decide(ctx(member=False, body="help")).verdict
    assert verdict.action == REJECT and verdict.reply == "help"
