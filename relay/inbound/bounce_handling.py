"""What a bounce or complaint does to a member: every report is kept; hard bounces are counted and,
over RELAY_HARD_BOUNCE_LIMIT, email to the member stops until a coordinator resets it; a complaint
(the member marked our mail as spam) is an email opt-out. Soft bounces and delays are only kept.

Only reports proven to be about one of relay's deliveries (relay.inbound.bounce_proof: its signed VERP address
or the signed token in the returned headers) count, and only for that delivery's recipient; anything
else is recorded on the inbound event with the reason, logged, and changes nobody (issue 13)."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.inbound.bounce_proof import prove
from relay.inbound.bounces import BounceReport, parse_report
from relay.members import consent
from relay.model.messages import InboundEmail
from relay.model.tables import ConsentEvent, Delivery, EmailBounce, Member, utcnow
from relay.providers.verp import is_bounce_address
from relay.rules.automatic import is_bounce

log = logging.getLogger(__name__)


def handle_report(session: Session, settings, email: InboundEmail, event_id: int | None) -> tuple[str, str] | None:
    """(outcome, detail) for a bounce or complaint that arrived as `email`: "bounce" when at least one of
    its reports was proven and recorded, "bounce_ignored" when nothing in it could be believed; mail to a
    bounce address that is no report (an auto-reply goes to the envelope sender, RFC 3834) is "discarded".
    None when `email` is neither a report nor addressed to a bounce address."""
    if not is_bounce(email):
        if any(is_bounce_address(settings, a) for a in email.recipients):
            return "discarded", "mail to a bounce address that is not a delivery report (an auto-reply?)"
        return None
    reports = parse_report(email)
    proof = prove(settings, email.recipients, email)
    recipients: dict[str, int | None] = {}  # proven recipient address -> the member its delivery was for
    for delivery in session.scalars(select(Delivery).where(Delivery.id.in_(proof.delivery_ids),
                                                           Delivery.channel == "email")):
        recipients[delivery.to_address.strip().lower()] = delivery.member_id
    accepted = [r for r in reports if r.recipient in recipients]
    others = [r for r in reports if r.recipient not in recipients and r.kind != "delayed"]
    counts = record_bounces(session, settings, accepted, event_id, members=recipients)
    notes = list(dict.fromkeys(proof.refused))
    if not recipients:
        notes.append("no relay-signed delivery proven (no signed bounce address, no signed "
                     "X-Relay-Delivery or Return-Path in the returned headers)")
    elif others:
        notes.append(f"ignored {len(others)} report(s) for another recipient than the proven delivery's")
    if others:
        notes.append("named: " + ", ".join(sorted({_masked(r.recipient) for r in others})[:10]))
    detail = "; ".join([", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing counted", *notes])
    if counts:
        if notes:
            log.warning("inbound email %s: bounce partly believed: %s", event_id, detail)
        return "bounce", detail
    if not reports:
        detail += "; no recipients found"
    log.warning("inbound email %s: bounce or complaint ignored: %s", event_id, detail)
    return "bounce_ignored", detail


def _masked(address: str) -> str:
    local, at, host = address.rpartition("@")
    return f"{local[:1]}***{at}{host}" if at else "***"


def record_bounces(session: Session, settings, reports: Iterable[BounceReport], event_id: int | None,
                   members: dict[str, int | None] | None = None) -> Counter:
    """Keep each report against its member; returns how many of each kind were recorded. `members`
    (recipient address -> member id, from the proven delivery) names the member; without it the member
    is looked up by address."""
    counts: Counter = Counter()
    for report in reports:
        if report.kind == "delayed":
            counts["delayed"] += 1
            continue
        if members is not None:
            member_id = members.get(report.recipient.lower())
            member = session.get(Member, member_id) if member_id is not None else None
        else:
            member = session.scalar(select(Member).where(Member.email == report.recipient.lower()))
        session.add(EmailBounce(member_id=member.id if member else None, recipient=report.recipient,
                                kind=report.kind, status=report.status or "", diagnostic=report.diagnostic or "",
                                inbound_event_id=event_id))
        counts[report.kind] += 1
        if member is None:
            continue
        if report.kind == "hard":
            member.email_hard_bounces += 1
            if member.email_hard_bounces >= settings.hard_bounce_limit and member.email_suspended_at is None:
                member.email_suspended_at = utcnow()
                log.warning("member %s: email suspended after %s hard bounces (%s)", member.id,
                            member.email_hard_bounces, report.status)
        elif report.kind == "complaint":
            consent.opt_out_email(session, member, source="email:complaint")
    return counts


def reset_bounces(session: Session, member: Member, source: str) -> None:
    """A coordinator's undo: the count starts again and email resumes."""
    member.email_hard_bounces = 0
    if member.email_suspended_at is not None:
        member.email_suspended_at = None
        session.add(ConsentEvent(member_id=member.id, channel="email", action="bounce_reset", source=source))
