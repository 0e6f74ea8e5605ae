"""The posting policy as ordered tables of rules (after GNU Mailman's chains): one for SMS, one for email.

Each rule is a module with NAME, a one-line DESCRIPTION and `check(ctx) -> Verdict | None`;
None means "no opinion, ask the next rule". The first verdict wins; every rule that was asked is
recorded on the inbound event, so an operator can see why a message was or was not relayed.
The unknown-sender and authorisation rules are the same modules in both tables. The rules are pure:
what needs the database (a bounce's proof, the flood limit, threading, the sender's proof) is done by
the processor (relay/inbound/sms.py, relay/inbound/mail.py) on a COMMAND verdict or after ACCEPT.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from relay.rules import (
    acknowledgement,
    authorisation,
    automatic,
    bounce_report,
    call_preference,
    coordinator_command,
    duplicate,
    intake,
    keywords,
    loop,
    unknown_sender,
    unsubscribe_address,
)
from relay.rules.verdict import ACCEPT, COMMAND, DISCARD, REJECT, EmailRuleContext, RuleContext, Verdict

__all__ = ["ACCEPT", "COMMAND", "DISCARD", "EMAIL_RULES", "REJECT", "RULES", "Decision", "EmailRuleContext",
           "RuleContext", "Verdict", "decide", "decide_email"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    fired: tuple[str, ...] = field(default_factory=tuple)


# issue 17: acknowledgements, NO CALLS / CALLS OK and coordinator commands after STOP/START/HELP (anyone can
# always stop) and before authorisation (they are commands, not posts)
RULES = (duplicate, loop, unknown_sender, keywords, acknowledgement, call_preference, coordinator_command,
         authorisation)

# Email: an unsubscribe address first (anyone may send it), then reports, then automatic mail (never
# relayed, never answered), intake, and the same membership rules as SMS.
EMAIL_RULES = (unsubscribe_address, bounce_report, automatic, intake, unknown_sender, authorisation)


def decide(ctx: RuleContext) -> Decision:
    """Run the SMS rules in order; the first verdict wins. No verdict at all means accept."""
    return _run(RULES, ctx)


def decide_email(ctx: EmailRuleContext) -> Decision:
    """Run the email rules in order; the first verdict wins. No verdict at all means accept."""
    return _run(EMAIL_RULES, ctx)


def _run(rules, ctx) -> Decision:
    asked: list[str] = []
    for rule in rules:
        asked.append(rule.NAME)
        verdict = rule.check(ctx)
        if verdict is not None:
            return Decision(verdict, tuple(asked))
    return Decision(Verdict(ACCEPT, "passed every rule"), tuple(asked))
