"""issue 17: coordinator commands by email to the relay address (the same words as by SMS:
relay/rules/coordinator_command.py, carried out by relay/inbound/coordinator_commands.py). The From line
proves nothing, so a command is carried out only with an aligned SPF/DKIM pass from the provider
(relay/providers/sender_auth.py) and from a member whose roles allow it; anything else is recorded on the
event and never answered (an answer to a forged From would be backscatter). A proven coordinator's answer
(the preview and its code, bound to their address) goes back by email. A confirmed SEND marks the notice
due, and beat sends it within 30 s (the email path runs no after-commit work)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.access.permissions import allowed
from relay.discussion import holding
from relay.inbound import coordinator_commands
from relay.inbound.reply_text import visible_text
from relay.model.tables import Member
from relay.providers import sender_auth
from relay.render.texts import render_sms
from relay.rules.coordinator_command import DRAFTS, PERMISSIONS, parse

PURPOSE = "command_reply"


class _EmailAnswers:
    """The plan.reply() of coordinator_commands, answering by email instead of SMS."""

    def __init__(self, settings, event_id: int, member: Member):
        self.settings, self.event_id, self.member = settings, event_id, member
        self.rows: list[dict] = []

    def reply(self, template: str, case_id: int | None = None, key: str | None = None, **context) -> None:
        body = render_sms(self.settings.templates_dir, template, self.member.language,
                          network=self.settings.network_name, **context)
        self.rows.append({"dedupe_key": key or f"command:{self.event_id}:{template}", "purpose": PURPOSE,
                          "channel": "email", "member_id": self.member.id, "case_id": None,
                          "to_address": self.member.email, "body": body})


def handle(session: Session, settings, email, member: Member, event_id: int) -> tuple[str, str, list] | None:
    """(outcome, detail, delivery rows) when the mail is a coordinator command, else None."""
    text = (visible_text(email.text, email.html) or "").strip()
    command = parse(text)
    if command is None:
        return None
    if command.verb == "send" and (holding.waiting_for(session, member.id, command.code) is not None
                                   or not allowed(member.role_set, PERMISSIONS["send"])):
        return None  # issue 16 reads SEND <code> too: the author's own held reply (relay/inbound/mail.py decides)
    if not member.active or not allowed(member.role_set, PERMISSIONS[command.verb]):
        if command.verb in DRAFTS:
            return None  # a member's "URGENT ...: ..." is the reply it reads as (relay/rules/coordinator_command.py)
        return "rejected", f"{command.verb.upper()} by email needs the coordinator or admin role; not answered", []
    proven = sender_auth.proof(email.auth, email.from_address, settings.email_trusted_authserv_ids)
    if proven is None:
        return "rejected", (f"{command.verb.upper()} by email: sender not proven (no aligned SPF/DKIM pass); "
                            "nothing done, not answered"), []
    answers = _EmailAnswers(settings, event_id, member)
    detail, _after = coordinator_commands.apply(session, settings, member, text, member.email or "", "email",
                                                answers)
    return f"command:{command.verb}", f"{detail}; sender: {proven}", answers.rows
