"""Applying provider status callbacks through the transition table (never backwards)."""
from __future__ import annotations

import logging

from sqlalchemy import select

from relay.inbound import whatsapp
from relay.inbound.record import attempt
from relay.infra.db import transaction
from relay.members import consent
from relay.model.tables import Delivery, InboundEvent, Member, utcnow
from relay.outbound.deliveries import can_move
from relay.outbound.queueing import dispatch_deliveries
from relay.providers import twilio_sms

log = logging.getLogger(__name__)


def apply_status(services, event_id: int) -> str:
    """Apply one recorded status callback. Returns what happened, for logs and tests."""
    fallback_ids: list[int] = []
    result = _apply(services, event_id, fallback_ids)
    dispatch_deliveries(services, fallback_ids)
    return result


def _apply(services, event_id: int, fallback_ids: list[int]) -> str:
    with attempt(services, event_id), transaction(services.sessions) as session:
        event = session.get(InboundEvent, event_id, with_for_update=True)
        if event is None or event.processed_at is not None:
            return "duplicate"
        update = twilio_sms.parse_status(twilio_sms.parse_raw(event.raw))
        delivery = session.scalar(select(Delivery).where(
            Delivery.provider_message_id == update.provider_message_id).with_for_update())
        if delivery is None:
            # The send has not recorded its sid yet (or never will): keep the event unprocessed;
            # the send applies it when it records the sid, and the sweeper retries it.
            event.outcome = "unmatched"
            return "unmatched"
        if update.error_code in twilio_sms.OPTED_OUT_ERROR_CODES and delivery.member_id is not None \
                and delivery.channel == "sms":
            member = session.get(Member, delivery.member_id)
            assert member is not None  # deliveries.member_id is a foreign key: the member row exists
            consent.opt_out_sms(session, member, source=f"provider:{update.error_code}")
        before = delivery.status
        if can_move(before, update.status):
            delivery.status = update.status
            if update.error_code:
                delivery.error_code = update.error_code
                delivery.error_message = f"provider status {update.provider_status}"
            result = f"{before}->{update.status}"
            if delivery.channel == "whatsapp" and update.error_code:  # issue 19: 630xx (opt-out, window closed)
                fallback_ids.extend(whatsapp.apply_error(session, delivery, update.error_code))
        else:
            result = f"ignored {update.provider_status} at {before}"
        event.processed_at = utcnow()
        event.outcome = "applied" if "->" in result else "ignored"
        event.detail = result
        log.info("status %s for delivery %s: %s", update.provider_status, delivery.id, result)
        return result
