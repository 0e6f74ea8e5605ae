"""Processing one inbound email: unsubscribe mail, bounces, auto-replies, then the member's reply —
threaded by reply token, Message-ID or subject code, its quoted history and signature stripped,
posted to the case and relayed to every follower by SMS and email.

The rules run in this order, and the ones asked are recorded on the event:
unsubscribe -> bounce -> automatic (loops, auto-replies) -> unknown sender -> authorisation -> thread."""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import threads
from .autoreplies import automatic_reason, is_bounce
from .bounce_handling import record_bounces
from .bounces import parse_report
from .mail import LOOP_HEADER, list_id
from .models import Case, InboundEvent, Member, utcnow
from .providers.errors import BadWebhook
from .providers.inbound_email import parse_inbound_email
from .replies import visible_text
from .subscriptions import unsubscribe
from .rules.authorisation import POSTING_ROLES

log = logging.getLogger(__name__)


def process_email_event(session: Session, settings, event: InboundEvent):
    """Returns (outcome, post_id, delivery rows); the caller plans the rows and marks the event."""
    fired: list[str] = []

    def done(outcome: str, detail: str, post_id: int | None = None, rows: list | None = None):
        event.rules_fired = fired
        event.detail = detail
        return outcome, post_id, rows or []

    try:
        email = parse_inbound_email(event.provider, event.content_type, event.payload or b"")
    except (BadWebhook, ValueError) as exc:
        return done("invalid", str(exc))
    domain = settings.email_domain

    fired.append("unsubscribe")
    for address in email.recipients:
        local, _, host = address.rpartition("@")
        if host == domain and local.startswith("unsubscribe+"):
            # issue 5: list mail or a digest subscription, confirmed by one email (relay/subscriptions.py)
            result = unsubscribe(session, settings, local.split("+", 1)[1], "email:mailto")
            return done("unsubscribed" if result.found else "rejected",
                        "unsubscribe by mail" if result.found else "bad token", rows=result.rows)

    fired.append("bounce")
    if is_bounce(email):
        reports = parse_report(email)
        counts = record_bounces(session, settings, reports, event.id)
        return done("bounce", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no recipients found")

    fired.append("automatic")
    reason = automatic_reason(email, own_list_ids=(list_id(settings),), loop_header=LOOP_HEADER, own_domain=domain)
    if reason:
        return done("discarded", reason)

    fired.append("unknown_sender")
    member = session.scalar(select(Member).where(Member.email == email.from_address))
    if member is None:
        return done("rejected", "sender is not a member")  # no reply: it would be backscatter

    fired.append("authorisation")
    if not member.active or not (member.role_set & POSTING_ROLES):
        return done("rejected", "member may not post")

    fired.append("thread")
    found = threads.resolve_email_thread(session, settings.secret(), domain, email, member.id)
    if found.how == threads.TOKEN_MISMATCH:
        log.warning("inbound email %s: reply token of another member used by %s", event.id, email.from_address)
        return done("rejected", "reply token belongs to another member")
    if found.case_id is None:
        return done("no_case", "no reply token, known Message-ID or [C123] subject")
    case = session.get(Case, found.case_id)
    if case.status != "open":
        return done("closed_case", f"{case.code} is closed")
    text = visible_text(email.text, email.html)
    if not text:
        return done("empty", "nothing left after removing quotes and signature")

    from .processing import publish_reply

    post, rows = publish_reply(session, settings, case, member, text, "email", event.id)
    return done("posted", f"{case.code} by {found.how}", post.id, rows)
