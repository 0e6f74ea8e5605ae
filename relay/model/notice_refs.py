"""How a notice's deliveries point back to it: a notice about a case has a post in the case thread and
its deliveries carry that post's id; a general notice (no case, so no thread) names itself in the
delivery's dedupe key, notice:<id>:<member>:<channel>."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.model.tables import Delivery, Notice

PREFIX = "notice:"


def delivery_key(notice_id: int, member_id: int, channel: str) -> str:
    """The dedupe key of a general notice's delivery to one member on one channel."""
    return f"{PREFIX}{notice_id}:{member_id}:{channel}"


def notice_id_in_key(dedupe_key: str) -> int | None:
    """The notice id a general notice's dedupe key names, else None."""
    if not (dedupe_key or "").startswith(PREFIX):
        return None
    head = dedupe_key[len(PREFIX):].split(":", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def notice_of(session: Session, delivery: Delivery) -> Notice | None:
    """The notice a delivery belongs to (None for relays, confirmations and other messages)."""
    if delivery.purpose != "notice":
        return None
    if delivery.post_id is not None:
        return session.scalar(select(Notice).where(Notice.post_id == delivery.post_id))
    notice_id = notice_id_in_key(delivery.dedupe_key)
    return session.get(Notice, notice_id) if notice_id is not None else None


def deliveries_filter(notice: Notice):
    """A WHERE clause selecting the deliveries of `notice`."""
    if notice.post_id is not None:
        return (Delivery.post_id == notice.post_id) & (Delivery.purpose == "notice")
    return Delivery.dedupe_key.like(f"{PREFIX}{notice.id}:%")
