"""Sending one delivery: claim it atomically, check it may still go (relay/outbound/checks.py, shared
with batches), call the provider outside any transaction, record the result. Retryable failures come
back later with exponential backoff and jitter; an opt-out at the provider (Twilio 21610) becomes the
member's opt-out; other failures are final, code stored. A notice past its expiry is never sent late:
its waiting deliveries fail with error code "expired".

A rate limit saying "not now" is not a failure: relay's own limit (the slot is more than 30 s away,
relay/infra/ratelimit.py) or a provider's 429 with Retry-After puts the delivery back in the queue for its
slot, without counting an attempt (`_defer`): code `rate_limited` (a slot booked for it) or `throttled`
(the provider's Retry-After). What stops it waiting forever is its deadline (send_checks.deadline):
RELAY_MAX_DEFER_HOURS after it was queued ("rate limited for more than N hours"), or sooner its
notice's expiry or a relay's RELAY_RELAY_MAX_AGE."""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.infra.ratelimit import SLOT_LEAD
from relay.members import consent
from relay.model.delivery_states import ACCEPTED, FAILED, OPTED_OUT, QUEUED, RATE_LIMITED, SENDING, THROTTLED
from relay.model.messages import OutboundMessage, SendError
from relay.model.notice_refs import notice_of
from relay.model.tables import Delivery, InboundEvent, Member, utcnow
from relay.outbound import checks as send_checks
from relay.outbound import hold
from relay.outbound.bursts import alert_email, check_burst
from relay.outbound.deliveries import claim, move
from relay.outbound.queueing import DISPATCH_AHEAD, dispatch_deliveries
from relay.render import digest_mail
from relay.render.command_mail import command_reply_email
from relay.render.mail import compose

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)


@dataclass(frozen=True)
class SendOutcome:
    delivery_id: int
    # sent | skipped | retry | deferred (rate limit) | waiting (quiet hours) | failed | opted_out | expired |
    # held | stale
    result: str
    retry_in: float | None = None


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter: a burst of failures does not retry in lockstep."""
    return random.uniform(base, min(cap, base * 2 ** attempt))


def send_delivery(services, delivery_id: int) -> SendOutcome:
    """Send one delivery if this caller wins the claim, and record what the provider said."""
    settings = services.settings
    with transaction(services.sessions) as session:
        # --- emergency hold (relay/outbound/hold.py): while on, the delivery stays queued for later, unsent.
        if hold.is_on(session):
            hold.defer(session, delivery_id)
            return SendOutcome(delivery_id, "held")
        # reliability: the lease is a setting (RELAY_SEND_LEASE), so fault tests can shorten it
        if not claim(session, delivery_id, getattr(settings, "send_lease", LEASE)):
            return SendOutcome(delivery_id, "skipped")
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None  # claim() has just moved this row to sending
        attempts = delivery.attempts
        notice = notice_of(session, delivery)
        notice_id = notice.id if notice is not None else None
        member = session.get(Member, delivery.member_id) if delivery.member_id is not None else None
        # the checks a batch makes too (relay/outbound/checks.py): expiry, stale relays, the member's state now,
        # WhatsApp's 24-hour window (a fallback to other channels plans deliveries, queued after the commit)
        fallbacks: list[int] = []
        ready, refused = send_checks.check(session, settings, [(delivery, member, notice)], utcnow(), fallbacks)
        if refused and not fallbacks:
            return SendOutcome(delivery_id, refused[delivery_id])
        try:
            message = ready[0].limits(outbound_message(session, settings, delivery)) if ready else None
        except Exception as exc:  # a message we cannot even build will not build next time either
            log.exception("delivery %s: cannot compose", delivery_id)
            move(session, delivery, FAILED, error_code="compose", error_message=f"{type(exc).__name__}: {exc}",
                 lease_until=None)
            return SendOutcome(delivery_id, "failed")

    if message is None:  # WhatsApp fell back to the member's other channels (relay/outbound/whatsapp_window.py)
        dispatch_deliveries(services, fallbacks)
        return SendOutcome(delivery_id, "fallback")
    try:
        result = services.sender(message.channel).send(message)
    except SendError as error:
        outcome = record_failure(services, delivery_id, attempts, error)
        if notice_id is not None and outcome.result in ("failed", "retry"):
            # reliability: an error burst pauses the notice instead of burning through the list
            check_burst(services, notice_id)
        return outcome

    with transaction(services.sessions) as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        assert delivery is not None  # claimed above; only queued, never-attempted deliveries are ever deleted
        if not move(session, delivery, ACCEPTED, provider_message_id=result.provider_message_id, sent_at=utcnow(),
                    lease_until=None, error_code=None, error_message=None):
            # Given up on while the provider call was still running: keep the provider's id so
            # its status callbacks still find this delivery.
            delivery.provider_message_id = result.provider_message_id
            log.warning("delivery %s was %s when the provider accepted it as %s", delivery_id, delivery.status,
                        result.provider_message_id)
        pending = _pending_status_events(session, result.provider_message_id)
    for event_id in pending:  # callbacks that raced ahead of our own record of the sid
        dispatch_safely(services.dispatcher.apply_status, event_id)
    return SendOutcome(delivery_id, "sent")


def outbound_message(session, settings, delivery: Delivery) -> OutboundMessage:
    """The message of one delivery, as its provider sends it (also for a batch: relay/outbound/bulk.py)."""
    if delivery.channel == "email" and delivery.purpose in digest_mail.PURPOSES:  # issue 5: digests and
        return digest_mail.outbound(session, settings, delivery)  # subscription emails (relay/render/digest_mail.py)
    if delivery.channel == "email" and delivery.purpose == "command_reply":  # issue 17: coordinator commands
        email = command_reply_email(settings, delivery)
        return OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=email.as_bytes(),
                               message_id=str(email["Message-ID"]).strip("<>"))
    if delivery.channel == "email" and delivery.purpose == "alert":  # reliability: coordinator alerts (bursts.py)
        email = alert_email(settings, delivery)
        return OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=email.as_bytes(),
                               message_id=str(email["Message-ID"]).strip("<>"))
    if delivery.channel == "email" and (delivery.post_id is not None or delivery.purpose == "notice"):
        email = compose(session, settings, delivery)
        return OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=email.as_bytes(),
                               message_id=str(email["Message-ID"]).strip("<>"))
    return OutboundMessage(delivery.id, delivery.channel, delivery.to_address, delivery.body)


def record_failure(services, delivery_id: int, attempts: int, error: SendError) -> SendOutcome:
    """Record a failed send: retried with backoff, deferred, or failed for good (also for a batch)."""
    settings = services.settings
    with transaction(services.sessions) as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        assert delivery is not None  # claimed and attempted; only queued, never-attempted deliveries are ever deleted
        if delivery.status != SENDING:
            return SendOutcome(delivery_id, "skipped")
        if error.opted_out:
            move(session, delivery, OPTED_OUT, error_code=error.code, error_message=str(error), lease_until=None)
            if delivery.member_id is not None and delivery.channel in ("sms", "whatsapp"):
                member = session.get(Member, delivery.member_id)
                assert member is not None  # deliveries.member_id is a foreign key: the member row exists
                stop = consent.opt_out_sms if delivery.channel == "sms" else consent.opt_out_whatsapp
                stop(session, member, source=f"provider:{error.code}")
            log.info("delivery %s: recipient opted out at the provider (%s)", delivery_id, error.code)
            return SendOutcome(delivery_id, "opted_out")
        if error.throttled and error.retryable:
            outcome, countdown = _defer(session, settings, delivery, error)
            if outcome.result != "deferred":
                return outcome
        elif error.retryable and attempts < settings.max_send_attempts:
            delay = error.retry_after or backoff_seconds(attempts)
            move(session, delivery, QUEUED, error_code=error.code, error_message=str(error), lease_until=None,
                 next_attempt_at=utcnow() + timedelta(seconds=delay))
            log.warning("delivery %s: attempt %s failed, retrying in %.1fs: %s", delivery_id, attempts, delay, error)
            outcome, countdown = SendOutcome(delivery_id, "retry", delay), delay
        else:
            reason = str(error) if not error.retryable else f"gave up after {attempts} attempts: {error}"
            move(session, delivery, FAILED, error_code=error.code, error_message=reason, lease_until=None)
            log.warning("delivery %s failed: %s", delivery_id, reason)
            return SendOutcome(delivery_id, "failed")
    if countdown is not None:
        dispatch_deliveries(services, [delivery_id], countdown=countdown or None)
    return outcome


def _jitter(wait: float) -> float:
    """A little jitter for a provider's Retry-After, which every sender throttled at once was told alike."""
    return random.uniform(0, min(5.0, 0.1 * wait))


def _defer(session, settings, delivery: Delivery, error: SendError) -> tuple[SendOutcome, float | None]:
    """A rate limit said "not now": back to the queue for the slot, the attempt given back; or failed when
    the slot is past the delivery's deadline. Returns the outcome and the countdown to queue it with
    (None: the sweeper queues it DISPATCH_AHEAD before its slot)."""
    now = utcnow()
    member = session.get(Member, delivery.member_id) if delivery.member_id is not None else None
    quiet = send_checks.quiet_waited(session, delivery, member, now)
    send_by, code, reason = send_checks.deadline(settings, delivery, notice_of(session, delivery), quiet)
    if error.slot_at is not None:  # relay's own limit booked a slot: come back just before it, wait for it there
        slot = datetime.fromtimestamp(error.slot_at, timezone.utc)
        due, error_code = slot - timedelta(seconds=SLOT_LEAD), RATE_LIMITED
        text = f"waiting for the rate limit: {error}, at {slot.isoformat(timespec='seconds')}"
    else:  # a provider's Retry-After, or no slot before the deadline
        wait = error.retry_after if error.retry_after is not None else backoff_seconds(1)
        slot = due = now + timedelta(seconds=wait + _jitter(wait))
        error_code = THROTTLED
        text = f"waiting for the rate limit: {error}; retrying at {slot.isoformat(timespec='seconds')}"
    if slot > send_by:
        message = f"{reason}: {error}"
        move(session, delivery, FAILED, error_code=code, error_message=message, lease_until=None)
        log.warning("delivery %s failed: %s", delivery.id, message)
        return SendOutcome(delivery.id, {"expired": "expired", "stale": "stale"}.get(code, "failed")), None
    delay = (due - now).total_seconds()
    move(session, delivery, QUEUED, error_code=error_code, error_message=text + " (not counted as an attempt)",
         lease_until=None, next_attempt_at=due, attempts=max(0, delivery.attempts - 1), dispatched_at=now)
    log.info("delivery %s deferred by the rate limit for %.1fs (not an attempt): %s", delivery.id, delay, error)
    countdown = max(0.0, math.ceil(delay)) if due - now <= DISPATCH_AHEAD else None
    return SendOutcome(delivery.id, "deferred", max(0.0, delay)), countdown


def _pending_status_events(session, provider_message_id: str) -> list[int]:
    return list(session.scalars(select(InboundEvent.id).where(
        InboundEvent.kind == "status", InboundEvent.processed_at.is_(None),
        InboundEvent.dedupe_key.like(f"{provider_message_id}:%"))))
