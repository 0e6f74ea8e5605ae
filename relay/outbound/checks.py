"""What is checked when a claimed delivery is about to go out: one function for a single send
(relay.outbound.sending.send_delivery) and for a batch (relay.outbound.bulk._prepare), so the two cannot drift apart.

For each delivery, in this order:

- its notice has expired: `failed`, code `expired` (a notice is never sent late);
- a relayed reply older than RELAY_RELAY_MAX_AGE: `failed`, code `stale`;
- for what the member's ladder governs (relays and notices to a member, relay.members.ladder.GOVERNED), the
  member's state now, not when the delivery was planned, read the way planning reads it
  (relay.outbound.fanout.reachable_query, relay.members.ladder.shape_rows):
  - the member is no longer active: `failed`, code `inactive`;
  - opted out of the channel since (STOP, unsubscribe): `opted_out`, code `opted_out`; email suspended
    after hard bounces: `failed`, code `suspended`;
  - the ladder now holds it back (the case muted, a pause, digest or urgent only, digest for the
    notice's lists; urgent notices still go where planning lets them): `opted_out`, code `preferences`;
  - the member's quiet hours have begun: back to `queued` until they end (code `quiet_hours`), without
    counting an attempt; the sweeper queues it again then.

Whatever the member's ladder does not govern (confirmations, help, digests, alerts) goes as planned.
A WhatsApp delivery is then routed by the 24-hour window (relay/outbound/whatsapp_window.py): free-form,
a template (carried on Ready), or `fallback` to the member's other channels (their new deliveries'
ids appended to `fallbacks`, for the caller to queue after the commit).
The emergency hold and the claim come before this (each caller does them its own way: one row, or
one UPDATE for the batch). What passes gets its deadline for a rate-limit slot (`deadline`) and the
slot it booked when it was deferred, if any (relay/infra/ratelimit.py take_slot)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy.orm import Session

from relay.infra.ratelimit import SLOT_LEAD
from relay.members import ladder
from relay.model.delivery_states import FAILED, OPTED_OUT, QUEUED, QUIET_HOURS, RATE_LIMITED
from relay.model.messages import OutboundMessage
from relay.model.tables import Delivery, Member, Notice
from relay.outbound import call_checks, fanout, whatsapp_window
from relay.outbound.deliveries import move

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ready:
    """A claimed delivery that may be sent now."""

    delivery: Delivery
    member: Member | None
    notice: Notice | None
    send_by: datetime  # no rate-limit slot is booked after this (see deadline)
    slot_at: datetime | None  # the slot it booked when the rate limit deferred it
    route: whatsapp_window.Route = whatsapp_window.FREE_FORM  # WhatsApp: free-form or a template

    def limits(self, message: OutboundMessage) -> OutboundMessage:
        """The message with its rate-limit deadline and booked slot, for the sender's take_slot (and,
        on WhatsApp outside the window, its template)."""
        return replace(message, send_by=self.send_by.timestamp(),
                       slot_at=self.slot_at.timestamp() if self.slot_at is not None else None,
                       content_sid=self.route.content_sid, content_variables=self.route.content_variables)


def quiet_waited(session: Session, delivery: Delivery, member: Member | None, now: datetime) -> timedelta:
    """For a relayed reply, how much of its time since it was planned fell in the member's quiet hours:
    time it waited by the member's own choice, which RELAY_RELAY_MAX_AGE does not count (a reply
    relayed at 23:00 is on time at 07:00). Nothing for anything else."""
    if delivery.purpose != "relay" or member is None or delivery.member_id is None:
        return timedelta(0)
    return ladder.quiet_time_between(session, member, delivery.channel, delivery.created_at, now)


def deadline(settings, delivery: Delivery, notice: Notice | None,
             quiet: timedelta = timedelta(0)) -> tuple[datetime, str, str]:
    """(when, error code, reason): the latest a delivery may still go out, and why a delivery the rate
    limit would send later fails: RELAY_MAX_DEFER_HOURS after it was queued, or sooner its notice's
    expiry or (a relay) RELAY_RELAY_MAX_AGE, not counting `quiet` (quiet_waited)."""
    hours = settings.max_defer_hours
    when = delivery.created_at + timedelta(hours=hours)
    found = (when, RATE_LIMITED,
             f"rate limited for more than {hours} hour{'' if hours == 1 else 's'} (RELAY_MAX_DEFER_HOURS)")
    if notice is not None and notice.expires_at is not None and notice.expires_at < found[0]:
        found = (notice.expires_at, "expired",
                 f"notice {notice.id} expires at {notice.expires_at.isoformat()} before a sending slot; not sent late")
    max_age = getattr(settings, "relay_max_age", None)
    if delivery.purpose == "relay" and max_age and delivery.created_at + quiet + max_age < found[0]:
        found = (delivery.created_at + quiet + max_age, "stale",
                 f"relay older than {max_age} (RELAY_RELAY_MAX_AGE) before a sending slot; not sent late")
    return found


def booked_slot(delivery: Delivery) -> datetime | None:
    """The rate-limit slot a deferred delivery booked: it was queued SLOT_LEAD before it."""
    if delivery.error_code == RATE_LIMITED and delivery.next_attempt_at is not None:
        return delivery.next_attempt_at + timedelta(seconds=SLOT_LEAD)
    return None


def check(session: Session, settings, claimed: Sequence[tuple[Delivery, Member | None, Notice | None]],
          now: datetime, fallbacks: list[int] | None = None) -> tuple[list[Ready], dict[int, str]]:
    """Apply the send-time checks (module docstring) to claimed deliveries (status `sending`).
    Returns those that may go now, and {delivery id: outcome} for the others, already moved:
    expired | stale | failed | opted_out | waiting | fallback."""
    refused: dict[int, str] = {}
    passed: list[tuple[Delivery, Member | None, Notice | None]] = []
    for delivery, member, notice in claimed:
        outcome = _refusal(session, settings, delivery, member, notice, now)
        if outcome is None:
            passed.append((delivery, member, notice))
        else:
            refused[delivery.id] = outcome
    governed = [(i, d) for i, (d, m, _) in enumerate(passed)
                if d.purpose in ladder.GOVERNED and m is not None and d.member_id is not None]
    if governed:
        rows = [{"dedupe_key": d.dedupe_key, "purpose": d.purpose, "member_id": d.member_id, "case_id": d.case_id,
                 "channel": d.channel, "post_id": d.post_id, "index": i} for i, d in governed]
        zones = {m.id: m.timezone for _, m, _ in passed if m is not None}  # just read with the batch
        kept = {row["index"]: row for row in ladder.shape_rows(session, rows, now, zones=zones)}
        for i, delivery in governed:
            row = kept.get(i)
            if row is None:
                move(session, delivery, OPTED_OUT, error_code="preferences", lease_until=None,
                     error_message=f"held back by the member's preferences on {delivery.channel} since it was "
                                   "queued (muted case, pause, digest or urgent only); not sent")
                log.info("delivery %s: held back by member %s's preferences at send time", delivery.id,
                         delivery.member_id)
                refused[delivery.id] = "opted_out"
            elif row["next_attempt_at"] is not None:
                until = row["next_attempt_at"]
                move(session, delivery, QUEUED, error_code=QUIET_HOURS, lease_until=None, next_attempt_at=until,
                     attempts=max(0, delivery.attempts - 1),
                     error_message=f"waiting for the member's quiet hours to end at {until.isoformat()}")
                log.info("delivery %s: member %s's quiet hours, waiting until %s", delivery.id, delivery.member_id,
                         until.isoformat())
                refused[delivery.id] = "waiting"
    ready = []
    for delivery, member, notice in passed:
        if delivery.id in refused:
            continue
        way = whatsapp_window.FREE_FORM
        if delivery.channel == "whatsapp":  # issue 19: the 24-hour window
            way = whatsapp_window.route(session, settings, delivery, member, notice, now)
            if way.fallback:
                ids = fanout.plan(session, whatsapp_window.fall_back(session, delivery, member, way))
                if fallbacks is not None:
                    fallbacks.extend(ids)
                refused[delivery.id] = "fallback"
                continue
        send_by = deadline(settings, delivery, notice, quiet_waited(session, delivery, member, now))[0]
        ready.append(Ready(delivery, member, notice, send_by, booked_slot(delivery), way))
    return ready, refused


def _refusal(session: Session, settings, delivery: Delivery, member: Member | None, notice: Notice | None,
             now: datetime) -> str | None:
    """The checks that need nothing but the row and its member: the outcome if it must not go."""
    if delivery.purpose == call_checks.PURPOSE:  # issue 17: an escalation call (relay/outbound/call_checks.py)
        return call_checks.refusal(session, delivery, member, now)
    if notice is not None and notice.expires_at is not None and notice.expires_at <= now:
        move(session, delivery, FAILED, error_code="expired", lease_until=None,
             error_message=f"notice {notice.id} expired at {notice.expires_at.isoformat()}; not sent late")
        log.info("delivery %s: notice %s expired before it could be sent", delivery.id, notice.id)
        return "expired"
    max_age = getattr(settings, "relay_max_age", None)
    if delivery.purpose == "relay" and max_age and delivery.created_at <= now - max_age \
            and delivery.created_at + quiet_waited(session, delivery, member, now) <= now - max_age:
        # a reply relayed hours late misleads more than it helps; dropped, with the record kept
        move(session, delivery, FAILED, error_code="stale", lease_until=None,
             error_message=f"relay older than {max_age} (RELAY_RELAY_MAX_AGE); not sent late")
        log.warning("delivery %s: relay created %s is older than %s; dropped", delivery.id,
                    delivery.created_at.isoformat(), max_age)
        return "stale"
    if delivery.purpose not in ladder.GOVERNED or member is None:
        return None
    if not member.active:
        move(session, delivery, FAILED, error_code="inactive", lease_until=None,
             error_message=f"member {member.id} is no longer active; not sent")
        log.info("delivery %s: member %s is no longer active", delivery.id, member.id)
        return "failed"
    opted_out_at = member.opted_out_at(delivery.channel)
    if opted_out_at is not None:
        move(session, delivery, OPTED_OUT, error_code="opted_out", lease_until=None,
             error_message=f"member opted out of {delivery.channel} at {opted_out_at.isoformat()}; not sent")
        log.info("delivery %s: member %s opted out of %s since it was queued", delivery.id, member.id, delivery.channel)
        return "opted_out"
    if delivery.channel == "email" and member.email_suspended_at is not None:
        move(session, delivery, FAILED, error_code="suspended", lease_until=None,
             error_message=f"email to member {member.id} suspended after bounces at "
                           f"{member.email_suspended_at.isoformat()}; not sent")
        log.info("delivery %s: email to member %s is suspended", delivery.id, member.id)
        return "failed"
    return None
