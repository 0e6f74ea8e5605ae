"""The sweeper (run by beat): re-dispatch work that was committed but never queued or never
finished — a broker outage at enqueue time, a worker killed mid-send (expired lease) — queue the
deliveries whose booked rate-limit slot comes within the next two minutes (each with a countdown to
it; relay/outbound/sending.py `_defer`), and give up on deliveries that used every attempt. It also drops what
is not kept: raw inbound bodies past their retention, held messages past their time, a discarded draft's text
and images (relay/library/purge.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import DBAPIError

from relay.discussion import holding
from relay.inbound.coordinator_commands import expire_drafts
from relay.inbound.retention import purge_raw_bodies
from relay.infra import heartbeats
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.library.purge import purge_discarded
from relay.model.delivery_states import FAILED, SENDING
from relay.model.tables import CaseImage, Delivery, InboundEvent, utcnow
from relay.notices import escalation
from relay.notices.lifecycle import finish_notice, unfinished_notices
from relay.outbound import hold
from relay.outbound.deliveries import booked_soon, due_for_dispatch
from relay.outbound.queueing import DISPATCH_AHEAD, batch_size, dispatch_batches, dispatch_deliveries, dispatch_when_due
from relay.reach.rollups import sweep_reach

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)
STATUS_MATCH_HORIZON = timedelta(days=1)
MAX_ATTEMPTS = 10  # an inbound event whose processing failed this often is set aside as failed
REDISPATCH_AFTER = timedelta(minutes=5)  # a re-queued event still waiting is not re-queued sooner
MEDIA_STALE_AFTER = timedelta(minutes=15)  # longer than the longest fetch backoff (10 min)


@dataclass(frozen=True)
class SweepReport:
    inbound: int
    statuses: int
    deliveries: int
    gave_up: int
    set_aside: int = 0
    media: int = 0  # pending MMS pictures re-queued
    booked: int = 0  # deferred deliveries queued for their rate-limit slot


def sweep(services, stale_after: timedelta = STALE_AFTER, limit: int = 5000) -> SweepReport:
    now = utcnow()
    settings = services.settings
    with transaction(services.sessions) as session:
        heartbeats.mark(session, heartbeats.SWEEP, now)  # relay worker warns when this stops (relay/infra/heartbeats.py)
        gave_up = session.execute(  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
            update(Delivery)
            .where(Delivery.status == SENDING, Delivery.lease_until < now,
                   Delivery.attempts >= settings.max_send_attempts)
            .values(status=FAILED, error_code="lease", lease_until=None,
                    error_message=f"gave up: no result after {settings.max_send_attempts} attempts")
            .execution_options(synchronize_session=False)
        ).rowcount
        set_aside = _set_aside_stuck_events(session, now)
        holding.expire_due(session, now)  # issue 16: held messages nobody decided on in time are dropped, audited
        waiting = and_(InboundEvent.processed_at.is_(None), InboundEvent.received_at < now - stale_after,
                       or_(InboundEvent.dispatched_at.is_(None), InboundEvent.dispatched_at < now - REDISPATCH_AFTER))
        inbound = list(session.scalars(select(InboundEvent.id).where(
            waiting, InboundEvent.kind.in_(("sms", "email"))).order_by(InboundEvent.id).limit(limit)))
        statuses = list(session.scalars(select(InboundEvent.id).where(
            waiting, InboundEvent.kind == "status",
            InboundEvent.received_at > now - STATUS_MATCH_HORIZON).order_by(InboundEvent.id).limit(limit)))
        ids = inbound + statuses
        for start in range(0, len(ids), 500):
            session.execute(update(InboundEvent).where(InboundEvent.id.in_(ids[start:start + 500]))
                            .values(dispatched_at=now).execution_options(synchronize_session=False))
        # --- emergency hold (relay/outbound/hold.py): nothing is re-queued while sending is paused.
        held = hold.is_on(session)
        # deferred by the rate limit: queued just before the slot each one booked, with a countdown to it
        booked = [] if held else booked_soon(session, DISPATCH_AHEAD, limit=limit, now=now)
        booked_ids = {delivery_id for delivery_id, _ in booked}
        deliveries = [] if held else [d for d in due_for_dispatch(session, stale_after, limit=limit, now=now)
                                      if d not in booked_ids]
        broadcast = _broadcast_deliveries(session, deliveries, now)
        unfinished = unfinished_notices(session, now - REDISPATCH_AFTER)
        media = list(session.scalars(select(CaseImage.id).where(
            CaseImage.status == "pending", CaseImage.updated_at < now - MEDIA_STALE_AFTER)
            .order_by(CaseImage.id).limit(limit)))
        if media:
            session.execute(update(CaseImage).where(CaseImage.id.in_(media[:500])).values(updated_at=now)
                            .execution_options(synchronize_session=False))
            media = media[:500]
    for image_id in media:
        dispatch_safely(services.dispatcher.fetch_media, image_id)
    for notice_id in unfinished:  # a sender died between a broadcast's waves: plan and queue the rest
        log.warning("sweep: finishing notice %s, left half-planned", notice_id)
        finish_notice(services, notice_id)
    for event_id in inbound:
        dispatch_safely(services.dispatcher.process_inbound, event_id)
    for event_id in statuses:
        dispatch_safely(services.dispatcher.apply_status, event_id)
    dispatch_deliveries(services, [d for d in deliveries if d not in broadcast])
    dispatch_when_due(services, booked)
    # a broadcast's waiting deliveries go back in batches to the bulk queue, behind the broadcast,
    # never ahead of replies on the outbound queue (claims make any duplicate task a no-op)
    ordered = sorted(broadcast)
    size = batch_size(services)
    dispatch_batches(services, (ordered[i:i + size] for i in range(0, len(ordered), size)))
    purge_raw_bodies(services)  # clinical text is not kept past its retention (in short batches of its own)
    purge_discarded(services)  # nor a discarded draft's text and images (relay/library/purge.py)
    urgent_path(services, now)  # issue 17
    sweep_reach(services)  # issue 20: the Reach rollups; the reader count's past salts destroyed
    report = SweepReport(len(inbound), len(statuses), len(deliveries), gave_up, set_aside, len(media), len(booked))
    if any((report.inbound, report.statuses, report.deliveries, report.gave_up, report.set_aside, report.media,
            report.booked)):
        log.info("sweep: re-dispatched %s inbound, %s statuses, %s deliveries; gave up on %s deliveries; "
                 "set aside %s events; re-queued %s MMS pictures; queued %s deliveries for their rate-limit slots",
                 report.inbound, report.statuses, report.deliveries, report.gave_up, report.set_aside, report.media,
                 report.booked)
    return report


def urgent_path(services, now) -> None:
    """issue 17: drop the drafts whose SMS confirmation code died unused, and take the escalation steps that
    are due (relay/notices/escalation.py: the state is in the database, so any sweep may do it)."""
    try:
        with transaction(services.sessions) as session:
            dropped = expire_drafts(session, now)
        if dropped:
            log.info("sweep: %s unconfirmed drafts expired", dropped)
        escalation.escalate(services, now)
    except DBAPIError:
        raise
    except Exception:  # one bad notice must not stop the sweep's other work; the next sweep tries again
        log.exception("sweep: the escalation of urgent notices failed; retried at the next sweep")


def _broadcast_deliveries(session, delivery_ids: list[int], now) -> set[int]:
    """Which of these deliveries belong to notices or digest runs (sent in batches), stamped as dispatched
    now."""
    found: set[int] = set()
    for start in range(0, len(delivery_ids), 500):
        chunk = delivery_ids[start:start + 500]
        found.update(session.scalars(select(Delivery.id).where(Delivery.id.in_(chunk),
                                                               Delivery.purpose.in_(("notice", "digest")),
                                                               Delivery.status == "queued")))
    ordered = sorted(found)
    for start in range(0, len(ordered), 500):
        session.execute(update(Delivery).where(Delivery.id.in_(ordered[start:start + 500]))
                        .values(dispatched_at=now).execution_options(synchronize_session=False))
    return found


def _set_aside_stuck_events(session, now) -> int:
    """Events whose processing failed MAX_ATTEMPTS times are marked failed (kept, visible in
    metrics and logs) instead of being retried forever; callbacks for messages we never sent expire."""
    stuck = session.scalars(select(InboundEvent).where(
        InboundEvent.processed_at.is_(None),
        or_(InboundEvent.attempts >= MAX_ATTEMPTS,
            and_(InboundEvent.kind == "status", InboundEvent.received_at <= now - STATUS_MATCH_HORIZON)))).all()
    for event in stuck:
        event.processed_at = now
        event.outcome = "unmatched" if event.kind == "status" else "failed"
        event.detail = f"set aside by the sweeper after {event.attempts} failed attempts"
        log.error("inbound event %s (%s) set aside after %s failed attempts; raw request kept", event.id,
                  event.kind, event.attempts)
    return len(stuck)
