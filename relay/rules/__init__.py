"""The posting policy as one ordered table of rules (after GNU Mailman's chains).

Each rule is a module with NAME, a one-line DESCRIPTION and `check(ctx) -> Verdict | None`;
None means "no opinion, ask the next rule". The first verdict wins; every rule that was asked is
recorded on the inbound event, so an operator can see why a message was or was not relayed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from relay.rules import authorisation, duplicate, keywords, loop, unknown_sender
from relay.rules.verdict import ACCEPT, COMMAND, DISCARD, REJECT, RuleContext, Verdict

__all__ = ["ACCEPT", "COMMAND", "DISCARD", "REJECT", "RULES", "Decision", "RuleContext", "Verdict", "decide"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    fired: tuple[str, ...] = field(default_factory=tuple)


RULES = (duplicate, loop, unknown_sender, keywords, authorisation)


def decide(ctx: RuleContext) -> Decision:
    """Run the rules in order; the first verdict wins. No verdict at all means accept."""
    asked: list[str] = []
    for rule in RULES:
        asked.append(rule.NAME)
        verdict = rule.check(ctx)
        if verdict is not None:
            return Decision(verdict, tuple(asked))
    return Decision(Verdict(ACCEPT, "passed every rule"), tuple(asked))
