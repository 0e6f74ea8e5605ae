"""WhatsApp's 24-hour window, decided per delivery at send time (issue 19).

WhatsApp lets a business send free-form messages only within 24 hours of the member's last message to
it; outside that window only a pre-approved template goes, through Twilio's Content API (ContentSid +
ContentVariables). relay records each member's last inbound WhatsApp message
(members.whatsapp_last_inbound_at, relay/inbound/whatsapp.py) and, when a claimed WhatsApp delivery is
about to go (relay/outbound/checks.py, for a single send and a batch alike), routes it:

- the channel is off (RELAY_TWILIO_WHATSAPP_FROM unset), or the member has no recorded opt-in: fall back;
- inside the window: free-form, the delivery's own text;
- outside it: the template for the message's kind (the notice's kind, or `relay` for a relayed reply) in
  the member's language (else English) from RELAY_WHATSAPP_TEMPLATES, with the case code, title and
  library link as its variables;
- no such template: fall back.

Falling back never loses the message: the WhatsApp delivery fails with a code (`whatsapp_off`,
`whatsapp_opt_in`, `whatsapp_window`) and a reason the console shows, and the same message is planned on
one other channel of the member's (one they chose: SMS, else email; else an address they have not opted
out of, email first), keyed like any delivery on that channel so a member who already gets it there gets
it once. With no other channel the reason says so: the case is in the library
and the member's next digest. Replies to a message the member just sent (confirmations, help) are inside
the window by definition and go free-form.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from relay.members import ladder
from relay.model.channels import WHATSAPP_WINDOW
from relay.model.delivery_states import FAILED
from relay.model.tables import Case, Delivery, Member, Notice, Post
from relay.outbound.deliveries import move
from relay.providers import whatsapp

log = logging.getLogger(__name__)

OFF = "whatsapp_off"
NO_OPT_IN = "whatsapp_opt_in"
WINDOW = "whatsapp_window"


@dataclass(frozen=True)
class Route:
    """How one WhatsApp delivery goes: free-form, a template, or (code set) not on WhatsApp at all."""

    content_sid: str = ""
    content_variables: str = ""
    code: str = ""  # set: fall back, for this reason
    reason: str = ""

    @property
    def fallback(self) -> bool:
        return bool(self.code)


FREE_FORM = Route()


def in_window(member: Member | None, now: datetime) -> bool:
    """Whether `now` is within 24 hours of the member's last WhatsApp message to us (the boundary: out)."""
    last = member.whatsapp_last_inbound_at if member is not None else None
    return last is not None and now - last < WHATSAPP_WINDOW


def message_kind(delivery: Delivery, notice: Notice | None) -> str:
    """The kind a template is configured under: the notice's kind, else the delivery's purpose."""
    return notice.kind if notice is not None else delivery.purpose


def route(session: Session, settings, delivery: Delivery, member: Member | None, notice: Notice | None,
          now: datetime) -> Route:
    """How `delivery` (channel whatsapp) goes now; see the module docstring."""
    if not settings.whatsapp_enabled:
        return Route(code=OFF, reason="WhatsApp is off (RELAY_TWILIO_WHATSAPP_FROM is unset)")
    if member is None or delivery.purpose not in ladder.GOVERNED:
        return FREE_FORM  # an answer to a message just received: inside the window
    if member.whatsapp_opted_in_at is None:
        return Route(code=NO_OPT_IN, reason=f"member {member.id} has no recorded WhatsApp opt-in")
    if in_window(member, now):
        return FREE_FORM
    kind = message_kind(delivery, notice)
    try:
        templates = whatsapp.load_templates(settings.whatsapp_templates)
    except whatsapp.TemplateError as exc:
        log.error("WhatsApp templates unusable: %s", exc)
        templates = {}
    last = member.whatsapp_last_inbound_at
    since = f"the member's last WhatsApp message {last.isoformat(timespec='minutes')}" if last else \
        "the member has never written on WhatsApp"
    found = whatsapp.template_for(templates, kind, member.language or "en")
    if found is None:
        return Route(code=WINDOW, reason=f"outside WhatsApp's 24-hour window ({since}) and no template for "
                                         f"{kind!r} in RELAY_WHATSAPP_TEMPLATES")
    code, title, link = _variables(session, settings, delivery, notice)
    return Route(content_sid=found[0], content_variables=whatsapp.template_variables(code, title, link))


def _variables(session: Session, settings, delivery: Delivery, notice: Notice | None) -> tuple[str, str, str]:
    case = session.get(Case, delivery.case_id) if delivery.case_id is not None else None
    if notice is not None:
        title = case.title if notice.kind == "new_case" and case is not None else (notice.title or "")
    else:
        title = case.title if case is not None else ""
    link = settings.case_url(case.code) if case is not None else settings.library_url
    return (case.code if case is not None else ""), title, link


def _fallback_channel(member: Member | None) -> str | None:
    """Where a message that cannot go on WhatsApp goes: a channel the member chose (SMS, then email), else
    any address they have not opted out of (email first: international SMS is what WhatsApp saves them)."""
    if member is None or not member.active:
        return None
    if member.takes_sms:
        return "sms"
    if member.takes_email:
        return "email"
    if member.email and member.email_opted_out_at is None and member.email_suspended_at is None:
        return "email"
    if member.phone and member.sms_opted_out_at is None:
        return "sms"
    return None


def fall_back(session: Session, delivery: Delivery, member: Member | None, why: Route) -> list[dict]:
    """Fail the WhatsApp delivery with the reason, and return the rows that carry the same message on
    the member's other channels (for fanout.plan: deduplicated by key, shaped by the member's ladder)."""
    rows = []
    channel = _fallback_channel(member)
    if member is not None and channel is not None:
        key = delivery.dedupe_key
        key = key[:-len(":whatsapp")] + f":{channel}" if key.endswith(":whatsapp") else f"{key}:fallback:{channel}"
        body = delivery.body
        if channel == "email" and delivery.post_id is not None:
            post = session.get(Post, delivery.post_id)
            body = post.body if post is not None else body
        rows.append({"dedupe_key": key[:120], "purpose": delivery.purpose, "post_id": delivery.post_id,
                     "case_id": delivery.case_id, "member_id": member.id, "channel": channel,
                     "to_address": member.address_for(channel), "body": body})
    where = f"sent by {rows[0]['channel']} instead" if rows else \
        "no other channel: the case stays in the library and the member's digest"
    if not move(session, delivery, FAILED, error_code=why.code, error_message=f"{why.reason}; {where}",
                lease_until=None):  # already failed at the provider (a status callback): say what followed
        delivery.error_code, delivery.error_message = why.code, f"{why.reason}; {where}"
    log.info("delivery %s: not on WhatsApp: %s; %s", delivery.id, why.reason, where)
    return rows
