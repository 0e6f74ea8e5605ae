"""What the rules see and what they answer."""
from __future__ import annotations

from dataclasses import dataclass

from relay.model.messages import InboundEmail, InboundMessage

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
    # issue 17: the notices this member may acknowledge now (looked up only when the text looks like an ACK)
    open_acks: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return self.message.body


@dataclass(frozen=True)
class EmailRuleContext:
    """What the email rules see: the parsed mail and the facts the processor looked up for it (the
    sender's membership, whether a recipient is one of our bounce addresses). The rules never answer
    mail (`Verdict.reply` is ignored for email): its From line may be forged, and an answer would be
    backscatter."""
    email: InboundEmail
    member_id: int | None
    member_active: bool
    member_roles: frozenset[str]
    own_domain: str
    own_list_ids: tuple[str, ...]
    loop_header: str
    intake_address: str
    to_bounce_address: bool

    @property
    def text(self) -> str:
        return self.email.text or ""


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | discard | reject | command
    reason: str
    # SMS: stop | start | help | mute | unmute | pause | digest | urgent_only; email: unsubscribe | bounce | intake
    command: str | None = None
    argument: str | None = None  # the case code of MUTE C123, the length of PAUSE 24H, an unsubscribe token
    reply: str | None = None  # name of an SMS template to answer the sender with
