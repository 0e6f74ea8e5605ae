"""What the console's notice page shows while a notice goes out: its deliveries counted the way a
coordinator thinks of them, and the failed ones with the provider's error."""
from __future__ import annotations

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from relay.model.delivery_states import (
    ACCEPTED,
    DELIVERED,
    FAILED,
    OPTED_OUT,
    QUEUED,
    QUIET_HOURS,
    RATE_LIMIT_CODES,
    READ,
    SENDING,
    SENT,
    UNDELIVERED,
)
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Delivery, EmailBounce, Notice

# delivery status -> the console's column
COLUMNS = {QUEUED: "queued", SENDING: "queued", ACCEPTED: "sent", SENT: "sent", DELIVERED: "delivered",
           READ: "read", FAILED: "failed", UNDELIVERED: "failed", OPTED_OUT: "opted_out"}
ORDER = ("queued", "sent", "delivered", "read", "failed", "opted_out", "bounced")


def live_counts(session: Session, notice: Notice) -> dict:
    """{"queued", "sent", "delivered", "read" (WhatsApp read receipts), "failed", "opted_out", "bounced", "total", "held", "rate_limited",
    "quiet_hours"} for the notice. bounced: emails whose address bounced after the notice went out (they also
    count where they stand). rate_limited and quiet_hours: queued ones waiting for a rate-limit slot (relay's own
    or a provider's Retry-After), or for the end of quiet hours that began after planning."""
    where = deliveries_filter(notice)
    counts = dict.fromkeys(ORDER, 0)
    for status, n in session.execute(select(Delivery.status, func.count()).where(where).group_by(Delivery.status)):
        counts[COLUMNS.get(status, "queued")] += n
    counts["total"] = sum(counts[c] for c in ORDER if c != "bounced")
    bounced = exists().where(func.lower(EmailBounce.recipient) == func.lower(Delivery.to_address),
                             EmailBounce.kind.in_(("hard", "soft")), EmailBounce.created_at >= Delivery.created_at)
    counts["bounced"] = session.scalar(select(func.count()).select_from(Delivery)
                                       .where(and_(where, Delivery.channel == "email", bounced))) or 0
    waiting = dict(session.execute(select(Delivery.error_code, func.count()).where(
        and_(where, Delivery.status == QUEUED, Delivery.error_code.in_(("held", QUIET_HOURS, *RATE_LIMIT_CODES))))
        .group_by(Delivery.error_code)).all())
    counts["held"] = waiting.get("held", 0)
    counts["rate_limited"] = sum(waiting.get(code, 0) for code in RATE_LIMIT_CODES)
    counts["quiet_hours"] = waiting.get(QUIET_HOURS, 0)
    return counts


def rate_limited_until(session: Session, notice: Notice):
    """When the last of the notice's deliveries waiting for the rate limit is due (None: none waits)."""
    return session.scalar(select(func.max(Delivery.next_attempt_at)).where(
        deliveries_filter(notice), Delivery.status == QUEUED, Delivery.error_code.in_(RATE_LIMIT_CODES)))


def failed_deliveries(session: Session, notice: Notice, limit: int = 200) -> list[Delivery]:
    """The notice's deliveries that failed or were refused, with the provider's error code and message."""
    return list(session.scalars(select(Delivery).where(
        deliveries_filter(notice), Delivery.status.in_((FAILED, UNDELIVERED, OPTED_OUT)))
        .order_by(Delivery.id).limit(limit)))
