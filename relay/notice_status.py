"""What the console's notice page shows while a notice goes out: its deliveries counted the way a
coordinator thinks of them, and the failed ones with the provider's error."""
from __future__ import annotations

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from .deliveries import ACCEPTED, DELIVERED, FAILED, OPTED_OUT, QUEUED, SENDING, SENT, UNDELIVERED
from .models import Delivery, EmailBounce, Notice
from .notice_refs import deliveries_filter

# delivery status -> the console's column
COLUMNS = {QUEUED: "queued", SENDING: "queued", ACCEPTED: "sent", SENT: "sent", DELIVERED: "delivered",
           FAILED: "failed", UNDELIVERED: "failed", OPTED_OUT: "opted_out"}
ORDER = ("queued", "sent", "delivered", "failed", "opted_out", "bounced")


def live_counts(session: Session, notice: Notice) -> dict:
    """{"queued", "sent", "delivered", "failed", "opted_out", "bounced", "total", "held"} for the notice.
    bounced: emails whose address bounced after the notice went out (they also count where they stand)."""
    where = deliveries_filter(notice)
    counts = dict.fromkeys(ORDER, 0)
    for status, n in session.execute(select(Delivery.status, func.count()).where(where).group_by(Delivery.status)):
        counts[COLUMNS.get(status, "queued")] += n
    counts["total"] = sum(counts[c] for c in ORDER if c != "bounced")
    bounced = exists().where(func.lower(EmailBounce.recipient) == func.lower(Delivery.to_address),
                             EmailBounce.kind.in_(("hard", "soft")), EmailBounce.created_at >= Delivery.created_at)
    counts["bounced"] = session.scalar(select(func.count()).select_from(Delivery)
                                       .where(and_(where, Delivery.channel == "email", bounced))) or 0
    counts["held"] = session.scalar(select(func.count()).select_from(Delivery).where(
        and_(where, Delivery.status == QUEUED, Delivery.error_code == "held"))) or 0
    return counts


def failed_deliveries(session: Session, notice: Notice, limit: int = 200) -> list[Delivery]:
    """The notice's deliveries that failed or were refused, with the provider's error code and message."""
    return list(session.scalars(select(Delivery).where(
        deliveries_filter(notice), Delivery.status.in_((FAILED, UNDELIVERED, OPTED_OUT)))
        .order_by(Delivery.id).limit(limit)))
