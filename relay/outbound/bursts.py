"""Error bursts: when a large share of a notice's sends fail within a minute (a provider outage, a
suspended account, a bad template), pause the notice instead of burning through the whole list.

Pausing holds every delivery of the notice still waiting (status `held`; sends already in flight
finish), marks the notice `paused`, writes the audit trail and alerts each coordinator once (SMS and
email, by the deduplicated delivery keys). `resume` puts the held deliveries back in the queue."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from relay.infra import audit
from relay.infra.db import transaction
from relay.model.delivery_states import HELD, QUEUED, WAITING_CODES
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Delivery, Member, Notice, utcnow
from relay.model.translatable import N_, Translatable
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=1)
PAUSABLE = ("sent",)  # a notice whose deliveries are going out


class NoticeNotPaused(Translatable, ValueError):
    """resume on a notice that is not paused."""


@dataclass(frozen=True)
class Burst:
    failures: int
    attempts: int


def recent_failures(session: Session, notice: Notice, now) -> Burst:
    """The notice's sends that finished an attempt in the last minute, and how many of them failed
    (final failures and failures waiting for a retry; opt-outs are not errors, nor is waiting for a
    rate-limit slot or the end of quiet hours)."""
    finished = and_(deliveries_filter(notice), Delivery.updated_at >= now - WINDOW, Delivery.attempts > 0,
                    Delivery.status.notin_(("sending", HELD, "opted_out")))
    attempts = session.scalar(select(func.count()).select_from(Delivery).where(finished)) or 0
    failures = session.scalar(select(func.count()).select_from(Delivery).where(
        finished, Delivery.error_code.is_not(None), Delivery.error_code.notin_(WAITING_CODES),
        Delivery.status.in_(("failed", QUEUED)))) or 0
    return Burst(failures, attempts)


def check_burst(services, notice_id: int) -> bool:
    """After a failed send of a notice's delivery: pause the notice if the failures make a burst.
    Returns whether this call paused it (exactly one caller does, by a conditional UPDATE)."""
    settings, now = services.settings, utcnow()
    alert_ids: list[int] = []
    with transaction(services.sessions) as session:
        notice = session.get(Notice, notice_id)
        if notice is None or notice.status not in PAUSABLE:
            return False
        burst = recent_failures(session, notice, now)
        if burst.failures < settings.pause_min_failures or burst.failures <= settings.pause_failure_share * burst.attempts:
            return False
        won = session.execute(update(Notice).where(Notice.id == notice_id, Notice.status.in_(PAUSABLE))  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                              .values(status="paused").execution_options(synchronize_session=False)).rowcount == 1
        if not won:
            return False
        held = _hold(session, notice)
        last_error = session.scalar(select(Delivery.error_message).where(
            deliveries_filter(notice), Delivery.error_code.is_not(None)).order_by(Delivery.updated_at.desc()).limit(1))
        audit.record(session, "notice.pause", f"notice:{notice_id}", audit.Actor("error-burst", "system"),
                     failures=burst.failures, attempts=burst.attempts, held=held, last_error=(last_error or "")[:300])
        alert_ids = _alert_coordinators(session, settings, notice, burst, held, last_error or "")
        log.error("notice %s paused: %s of %s sends failed in the last minute; %s deliveries held; %s alerts",
                  notice_id, burst.failures, burst.attempts, held, len(alert_ids))
    dispatch_deliveries(services, alert_ids)
    return True


def _hold(session: Session, notice: Notice) -> int:
    return session.execute(update(Delivery).where(deliveries_filter(notice), Delivery.status == QUEUED)  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                           .values(status=HELD, lease_until=None).execution_options(synchronize_session=False)).rowcount


def _alert_coordinators(session: Session, settings, notice: Notice, burst: Burst, held: int,
                        last_error: str) -> list[int]:
    text = (f"{settings.network_name}: notice {notice.id} paused: {burst.failures} of {burst.attempts} sends "
            f"failed in a minute ({last_error[:80]}). {held} held. Resume: relay notice resume {notice.id}")
    coordinators = [m for m in session.scalars(select(Member).where(Member.active.is_(True)))
                    if "coordinator" in m.role_set]
    rows = []
    for member in coordinators:
        for channel, address, ok in (("sms", member.phone, member.phone and member.sms_opted_out_at is None),
                                     ("email", member.email, member.takes_email)):
            if ok:
                rows.append({"dedupe_key": f"pause-alert:{notice.id}:{member.id}:{channel}", "purpose": "alert",
                             "channel": channel, "member_id": member.id, "to_address": address, "body": text})
    return fanout.plan(session, rows) if rows else []


def alert_email(settings, delivery: Delivery):
    """A plain operational email to one coordinator (not list mail: no threading, no unsubscribe)."""
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = delivery.to_address
    message["Subject"] = f"{settings.network_name}: a notice was paused (too many failed sends)"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(f"alert.{delivery.id}", domain=settings.email_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(delivery.body)
    return message


def resume(services, notice_id: int, actor: audit.Actor = audit.SYSTEM) -> int:
    """Put a paused notice's held deliveries back in the queue; returns how many."""
    with transaction(services.sessions) as session:
        notice = session.get(Notice, notice_id)
        if notice is None or notice.status != "paused":
            raise NoticeNotPaused(N_("notice %(id)s is %(status)s, not paused"), id=notice_id,
                                  status=notice.status if notice else "not found")
        notice.status = "sent"
        ids = list(session.scalars(select(Delivery.id).where(deliveries_filter(notice), Delivery.status == HELD)))
        for start in range(0, len(ids), 500):
            session.execute(update(Delivery).where(Delivery.id.in_(ids[start:start + 500]))
                            .values(status=QUEUED, next_attempt_at=None, dispatched_at=None)
                            .execution_options(synchronize_session=False))
        audit.record(session, "notice.resume", f"notice:{notice_id}", actor, resumed=len(ids))
    dispatch_deliveries(services, ids)
    log.info("notice %s resumed: %s deliveries back in the queue", notice_id, len(ids))
    return len(ids)
