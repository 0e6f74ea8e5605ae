"""What a bounce or complaint does to a member: every report is kept; hard bounces are counted and,
over RELAY_HARD_BOUNCE_LIMIT, email to the member stops until a coordinator resets it; a complaint
(the member marked our mail as spam) is an email opt-out. Soft bounces and delays are only kept."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import consent
from .bounces import BounceReport
from .models import ConsentEvent, EmailBounce, Member, utcnow

log = logging.getLogger(__name__)


def record_bounces(session: Session, settings, reports: Iterable[BounceReport], event_id: int | None) -> Counter:
    """Keep each report against its member; returns how many of each kind were recorded."""
    counts: Counter = Counter()
    for report in reports:
        if report.kind == "delayed":
            counts["delayed"] += 1
            continue
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
