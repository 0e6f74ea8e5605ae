"""What the rules see and what they answer."""
from __future__ import annotations

from dataclasses import dataclass

from relay.model.messages import InboundMessage

ACCEPT = "accept"
DISCARD = "discard"
REJECT = "reject"
COMMAND = "command"


@dataclass(frozen=True)
class RuleContext:
    message: InboundMessage
    member_id: int | None
    member_active: bool
    member_roles: frozenset[str]
    own_numbers: frozenset[str]
    already_processed: bool


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | discard | reject | command
    reason: str
    command: str | None = None  # stop | start | help | mute | unmute | pause | digest | urgent_only
    argument: str | None = None  # the case code of MUTE C123, the length of PAUSE 24H
    reply: str | None = None  # name of an SMS template to answer the sender with
