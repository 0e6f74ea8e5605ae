"""Processing one inbound WhatsApp message (issue 19), and WhatsApp's error codes in status callbacks.

Twilio posts WhatsApp messages to the SMS webhook, signed the same way, with `From`/`To` prefixed
`whatsapp:`; they are stored as SMS events and relay.inbound.sms hands those here. The message is ruled
exactly as an SMS (the same rule table: loop, unknown sender, STOP/START/HELP and the preference
commands, authorisation; then limits, thread resolution, the reply window, the post), with WhatsApp's
differences:

- the sender is the member whose WhatsApp number (members.whatsapp, else their phone) it is; `ProfileName`
  is the sender's own claim and is never used to identify anyone;
- any message from a member records their WhatsApp opt-in (`whatsapp:message` in the consent log) and
  opens the 24-hour window (members.whatsapp_last_inbound_at, from when Twilio delivered it), except
  STOP, which opts them out of WhatsApp only; START opts back in;
- pictures are filed under the case as MMS pictures are (relay/inbound/mms.py); a shared location or a
  message with nothing relay can use (a sticker, a contact, audio without text) gets a short answer;
- answers go back on WhatsApp (inside the window: the member just wrote), never to a member who opted out.

This is a module of its own rather than a branch inside sms.py so the SMS path stays as it is; the steps
it shares are the same functions (rules, threads, publish_reply, limits, mms, ladder commands)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Mapping

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from relay.inbound import guard_commands, ladder_commands
from relay.inbound import limits as inbound_limits
from relay.inbound.replies import accept_reply
from relay.infra.logs import mask, mask_text
from relay.members import consent, ladder
from relay.model.channels import WHATSAPP_PREFIX
from relay.model.messages import InboundMessage
from relay.model.tables import Delivery, InboundEvent, Member, utcnow
from relay.outbound import fanout, whatsapp_window
from relay.providers import whatsapp as provider
from relay.render.texts import fit_sms, render_sms
from relay.rules import ACCEPT, COMMAND, DISCARD, REJECT, RuleContext, decide

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
# Message types relay can take as a post: text, and media it files as case pictures (with or without text).
USABLE_TYPES = frozenset({"", "text", "image", "document", "video", "button", "interactive"})


@dataclass
class Result:
    outcome: str
    post_id: int | None = None
    delivery_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)


def member_for(session: Session, number: str) -> Member | None:
    """The member whose WhatsApp number this is: their own `whatsapp`, else a phone with no other set."""
    found = session.scalar(select(Member).where(Member.whatsapp == number))
    if found is None:
        found = session.scalar(select(Member).where(Member.phone == number, or_(Member.whatsapp.is_(None),
                                                                                Member.whatsapp == number)))
    return found


def process(session: Session, settings, event: InboundEvent, form: Mapping[str, str],
            message: InboundMessage) -> Result:
    """Rule, record and answer one WhatsApp message (the caller locked the event and marks it processed)."""
    extras = provider.extras(form)
    message = replace(message, channel=CHANNEL)
    member = member_for(session, extras.number)
    own = settings.own_numbers | ({settings.whatsapp_number} if settings.whatsapp_number else frozenset())
    ctx = RuleContext(message=message, member_id=member.id if member else None,
                      member_active=bool(member and member.active),
                      member_roles=member.role_set if member else frozenset(), own_numbers=own,
                      already_processed=event.processed_at is not None)
    decision = decide(ctx)
    verdict = decision.verdict
    if verdict.action == DISCARD and event.processed_at is not None:
        return Result("duplicate")
    plan = _Plan(settings, event.id, message.sender, member)
    result = Result(verdict.action)
    if member is not None and verdict.action != DISCARD:
        _opened_window(member, event)
        stopping = verdict.action == COMMAND and verdict.command == "stop"
        if not stopping and member.whatsapp_opted_out_at is None:  # after STOP only START opts back in
            consent.opt_in_whatsapp(session, member, "whatsapp:message")
    if verdict.action == DISCARD:
        result.outcome = "discarded"
    elif verdict.action == REJECT:
        result.outcome = "rejected"
        if verdict.reply:
            plan.reply(verdict.reply, key=f"reject:{verdict.reply}:{message.sender}:{utcnow().date()}",
                       library=f"{settings.public_base_url}/library/")
    elif member is None:  # past the unknown-sender rule every verdict has a member; never relay without one
        result.outcome = "rejected"
    elif verdict.action == COMMAND:
        result.outcome = f"command:{verdict.command}"
        source = f"whatsapp:{message.body.strip().upper()[:20]}"
        if verdict.command == "stop":
            consent.opt_out_whatsapp(session, member, source=source)
        elif verdict.command == "start":
            consent.opt_in_whatsapp(session, member, source=source)
            ladder.resume(session, member, CHANNEL, source)
            plan.reply("start")
        elif verdict.command == "help":
            plan.reply("help", library=f"{settings.public_base_url}/library/")
        elif verdict.command in ("guard_send", "guard_drop"):  # issue 16: the author decides on a held reply
            result.outcome = guard_commands.apply(session, settings, member, verdict, plan)
        else:
            ladder_commands.apply(session, settings, member, verdict, source, plan, channel=CHANNEL)
    elif verdict.action == ACCEPT and extras.is_location:
        result.outcome = "unsupported:location"
        plan.reply("whatsapp_location")
    elif verdict.action == ACCEPT and extras.message_type not in USABLE_TYPES and not message.body.strip():
        result.outcome = f"unsupported:{extras.message_type}"
        plan.reply("whatsapp_unsupported", kind=extras.message_type)
    elif verdict.action == ACCEPT and inbound_limits.over_rate(session, settings, event):
        result.outcome = "throttled"
        plan.reply("throttled", key=inbound_limits.throttle_notice_key(message.sender, event),
                   limit=settings.inbound_per_minute)
    elif verdict.action == ACCEPT and inbound_limits.repeats_last_post(session, event, message.body):
        result.outcome = "repeat"
    elif verdict.action == ACCEPT:
        result.outcome, result.post_id = _accept(session, settings, event, member, message.body, form, plan)
        result.image_ids = plan.images

    if member is not None and member.whatsapp_opted_out_at is not None:
        plan.replies.clear()  # never message someone who has opted out, not even a confirmation
    if plan.rows or plan.replies:
        result.delivery_ids = fanout.plan(session, plan.rows + plan.replies)
    event.rules_fired = list(decision.fired)
    event.detail = verdict.reason + (f"; WhatsApp profile name {extras.profile_name!r} (unverified)"
                                     if extras.profile_name else "")
    log.info("inbound WhatsApp %s from %s: %s (%s)", event.id, mask(extras.number), result.outcome,
             mask_text(verdict.reason))
    return result


def _opened_window(member: Member, event: InboundEvent) -> None:
    """The member wrote: the 24-hour window runs from when Twilio handed us the message (never backwards)."""
    received = event.received_at
    if member.whatsapp_last_inbound_at is None or member.whatsapp_last_inbound_at < received:
        member.whatsapp_last_inbound_at = received


def _accept(session: Session, settings, event: InboundEvent, member: Member, body: str, form, plan: "_Plan"):
    """As an SMS reply (relay/inbound/replies.py), on the WhatsApp channel."""
    return accept_reply(session, settings, event, member, body, form, plan, CHANNEL)


class _Plan:
    """Answers to the sender, on WhatsApp (the `plan` ladder_commands.apply expects)."""

    def __init__(self, settings, event_id: int, sender: str, member: Member | None):
        self.settings, self.event_id, self.sender, self.member = settings, event_id, sender, member
        self.language = member.language if member is not None else "en"
        self.rows: list[dict] = []
        self.replies: list[dict] = []
        self.images: list[int] = []

    def reply(self, template: str, case_id: int | None = None, key: str | None = None, **context) -> None:
        body = render_sms(self.settings.templates_dir, template, self.language,
                          network=self.settings.network_name, **context)
        to = self.sender if self.sender.startswith(WHATSAPP_PREFIX) else f"{WHATSAPP_PREFIX}{self.sender}"
        self.replies.append({
            "dedupe_key": key or f"reply:{self.event_id}:{template}", "purpose": template, "channel": CHANNEL,
            "member_id": self.member.id if self.member is not None else None, "case_id": case_id,
            "to_address": to, "body": fit_sms(body)})


# --------------------------------------------------------------------------- status callbacks


def apply_error(session: Session, delivery: Delivery, error_code: str) -> list[int]:
    """A WhatsApp delivery failed with `error_code` (a status callback): an opt-out code opts the member out
    of WhatsApp; 63016 (outside the window: Twilio's view differed from ours) sends the message on the
    member's other channels. Returns the ids of deliveries planned, to queue after the commit."""
    member = session.get(Member, delivery.member_id) if delivery.member_id is not None else None
    if error_code in provider.OPT_OUT_CODES and member is not None:
        consent.opt_out_whatsapp(session, member, source=f"provider:{error_code}")
        return []
    if error_code == provider.WINDOW_CLOSED and delivery.purpose in ladder.GOVERNED:
        why = whatsapp_window.Route(code=error_code, reason=f"Twilio {error_code}: outside WhatsApp's 24-hour window")
        return fanout.plan(session, whatsapp_window.fall_back(session, delivery, member, why))
    return []
