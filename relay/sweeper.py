"""The sweeper (run by beat): re-dispatch work that was committed but never queued or never
finished — a broker outage at enqueue time, a worker killed mid-send (expired lease) — and
give up on deliveries that used every attempt."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from .db import transaction
from .deliveries import FAILED, SENDING, due_for_dispatch
from .dispatch import dispatch_safely
from .models import Delivery, InboundEvent, utcnow
from .sending import dispatch_deliveries

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)
STATUS_MATCH_HORIZON = timedelta(days=1)


@dataclass(frozen=True)
class SweepReport:
    inbound: int
    statuses: int
    deliveries: int
    gave_up: int


def sweep(services, stale_after: timedelta = STALE_AFTER, limit: int = 5000) -> SweepReport:
    now = utcnow()
    settings = services.settings
    with transaction(services.sessions) as session:
        gave_up = session.execute(
            update(Delivery)
            .where(Delivery.status == SENDING, Delivery.lease_until < now,
                   Delivery.attempts >= settings.max_send_attempts)
            .values(status=FAILED, error_code="lease", lease_until=None,
                    error_message=f"gave up: no result after {settings.max_send_attempts} attempts")
            .execution_options(synchronize_session=False)
        ).rowcount
        inbound = list(session.scalars(select(InboundEvent.id).where(
            InboundEvent.kind == "sms", InboundEvent.processed_at.is_(None),
            InboundEvent.received_at < now - stale_after).order_by(InboundEvent.id).limit(limit)))
        statuses = list(session.scalars(select(InboundEvent.id).where(
            InboundEvent.kind == "status", InboundEvent.processed_at.is_(None),
            InboundEvent.received_at < now - stale_after,
            InboundEvent.received_at > now - STATUS_MATCH_HORIZON).order_by(InboundEvent.id).limit(limit)))
        deliveries = due_for_dispatch(session, stale_after, limit=limit, now=now)
    for event_id in inbound:
        dispatch_safely(services.dispatcher.process_inbound, event_id)
    for event_id in statuses:
        dispatch_safely(services.dispatcher.apply_status, event_id)
    dispatch_deliveries(services, deliveries)
    report = SweepReport(len(inbound), len(statuses), len(deliveries), gave_up)
    if any((report.inbound, report.statuses, report.deliveries, report.gave_up)):
        log.info("sweep: re-dispatched %s inbound, %s statuses, %s deliveries; gave up on %s",
                 report.inbound, report.statuses, report.deliveries, report.gave_up)
    return report
