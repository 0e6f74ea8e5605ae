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
    assert [r.NAME for r in RULES] == ["duplicate", "loop", "unknown_sender", "keywords", "acknowledgement",
                                       "call_preference", "coordinator_command", "authorisation"]
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
    assert decision.fired == ("duplicate", "loop", "unknown_sender", "keywords", "acknowledgement", "call_preference",
                              "coordinator_command", "authorisation")


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


# The email table (relay.rules.EMAIL_RULES): pure rules over the parsed mail and looked-up facts.

def email_ctx(recipients=("cases@relay.example.org",), headers=(), from_address="ana@example.org",
              envelope_from="ana@example.org", member=True, active=True, roles=("member",), bounce_address=False,
              intake="intake@relay.example.org"):
    from relay.model.messages import InboundEmail
    from relay.rules import EmailRuleContext
    mail = InboundEmail(provider="mailgun", provider_message_id="", message_id="m1@example.org",
                        envelope_from=envelope_from, from_address=from_address, from_name="Ana",
                        recipients=tuple(recipients), mailbox_hash="", subject="Re: [C1] x", text="hello", html="",
                        headers=tuple(headers))
    return EmailRuleContext(email=mail, member_id=7 if member else None, member_active=active,
                            member_roles=frozenset(roles) if member else frozenset(),
                            own_domain="relay.example.org", own_list_ids=("cases.relay.example.org",),
                            loop_header="X-Relay-Loop", intake_address=intake, to_bounce_address=bounce_address)


def test_email_rule_order_is_the_documented_one():
    from relay.rules import EMAIL_RULES
    assert [r.NAME for r in EMAIL_RULES] == ["unsubscribe", "bounce", "automatic", "intake", "unknown_sender",
                                             "authorisation"]
    assert all(r.DESCRIPTION for r in EMAIL_RULES)


def test_email_from_a_member_passes_every_rule():
    from relay.rules import decide_email
    decision = decide_email(email_ctx())
    assert decision.verdict.action == ACCEPT and len(decision.fired) == 6


@pytest.mark.parametrize("kwargs,action,command,fired_last", [
    (dict(recipients=("unsubscribe+tok123@relay.example.org",), member=False), COMMAND, "unsubscribe", "unsubscribe"),
    (dict(headers=(("X-Failed-Recipients", "bob@example.org"),)), COMMAND, "bounce", "bounce"),
    (dict(bounce_address=True), COMMAND, "bounce", "bounce"),
    (dict(headers=(("Auto-Submitted", "auto-replied"),)), DISCARD, None, "automatic"),
    (dict(headers=(("X-Relay-Loop", "relay.example.org"),)), DISCARD, None, "automatic"),
    (dict(envelope_from=""), DISCARD, None, "automatic"),
    (dict(recipients=("intake@relay.example.org",), member=False), COMMAND, "intake", "intake"),
    (dict(member=False), REJECT, None, "unknown_sender"),
    (dict(active=False), REJECT, None, "authorisation"),
    (dict(roles=("reader",)), REJECT, None, "authorisation"),
])
def test_each_email_rule_decides_in_its_place(kwargs, action, command, fired_last):
    from relay.rules import decide_email
    decision = decide_email(email_ctx(**kwargs))
    assert (decision.verdict.action, decision.verdict.command, decision.fired[-1]) == (action, command, fired_last)


def test_an_unsubscribe_address_carries_its_token_and_beats_every_other_rule():
    from relay.rules import decide_email
    decision = decide_email(email_ctx(recipients=("unsubscribe+abc.def@relay.example.org",), member=False,
                                      headers=(("Auto-Submitted", "auto-replied"),)))
    assert decision.verdict.argument == "abc.def" and decision.fired == ("unsubscribe",)
