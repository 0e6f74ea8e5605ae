"""issue 17: the coordinator-command and acknowledgement rules: whole-message words, roles from the one
permission table, and "1" only with exactly one open request."""
from __future__ import annotations

import dataclasses

import pytest

from relay.rules import COMMAND, REJECT, decide
from relay.rules.acknowledgement import parse as parse_ack
from relay.rules.coordinator_command import parse
from tests.unit.rules.test_rules import ctx


@pytest.mark.parametrize("body,verb,lists,ack,text", [
    ("URGENT tft ACK 10m: Isolation changed", "urgent", ("tft",), "10m", "Isolation changed"),
    ("urgent tft,us ack: x  y", "urgent", ("tft", "us"), "", "x y"),
    ("NOTICE tft ACK?: hello", "notice", ("tft",), "", "hello"),
    ("notice TFT: hello: world", "notice", ("tft",), None, "hello: world"),
])
def test_draft_commands_parse(body, verb, lists, ack, text):
    command = parse(body)
    assert (command.verb, command.lists, command.ack, command.text) == (verb, lists, ack, text)


@pytest.mark.parametrize("body", ["URGENT ONLY", "urgent", "NOTICE: no list", "send me the CT", "SEND ABC1",
                                  "STATUS report", "hold all the calls", "C1 URGENT tft: x"])
def test_other_messages_are_not_commands(body):
    assert parse(body) is None


def test_codes_status_and_hold_parse():
    assert (parse("send abc234").verb, parse("send abc234").code) == ("send", "ABC234")
    assert parse("CANCEL XYZ789.").code == "XYZ789"
    assert parse("status #12").notice_id == 12
    assert parse("Hold All").verb == "hold" and parse("RESUME ALL").verb == "resume"


@pytest.mark.parametrize("roles,action", [(("member",), REJECT), (("contributor",), REJECT),
                                          (("coordinator",), COMMAND), (("admin",), COMMAND)])
def test_only_coordinators_and_admins_may_command(roles, action):
    decision = decide(ctx(body="STATUS 12", roles=roles))
    assert decision.verdict.action == action
    if action == REJECT:
        assert decision.verdict.reply == "not_authorised"


def test_a_members_notice_words_are_no_command_and_no_refusal():
    """A member's "NOTICE tft: ..." is text for the reply path (posted to its case, or answered with how to
    post: relay/inbound/replies.py), never a command. (A contributor is refused by the authorisation rule:
    no posting role.)"""
    decision = decide(ctx(body="NOTICE tft: hello", roles=("member",)))
    assert decision.verdict.action not in (COMMAND, REJECT)
    contributor = decide(ctx(body="NOTICE tft: hello", roles=("contributor",)))
    assert contributor.verdict.action == REJECT and contributor.verdict.reason == "member has no posting role"
    assert decide(ctx(body="NOTICE tft: hello", roles=("coordinator",))).verdict.action == COMMAND


def test_an_inactive_coordinator_may_not_command():
    assert decide(ctx(body="HOLD ALL", roles=("coordinator",), active=False)).verdict.action == REJECT


def test_stop_still_wins_over_everything():
    assert decide(ctx(body="STOP", roles=("coordinator",))).verdict.command == "stop"


@pytest.mark.parametrize("body,expected", [("ACK", (True, None)), ("ack 12", (True, 12)), ("OK 12", (True, 12)),
                                           ("ok #12!", (True, 12)), ("OK", (False, None)), ("ACK ME", (False, None)),
                                           ("C12 ack 12", (False, None))])
def test_ack_words(body, expected):
    assert parse_ack(body) == expected


def test_a_lone_1_acknowledges_only_the_one_open_request():
    one = dataclasses.replace(ctx(body="1"), open_acks=(12,))
    assert (decide(one).verdict.command, decide(one).verdict.argument) == ("ack", "12")
    assert decide(dataclasses.replace(ctx(body="1"), open_acks=(12, 13))).verdict.command is None
    assert decide(ctx(body="1")).verdict.command is None
