"""Acknowledgement requests (issue 17): a notice may ask its recipients to confirm they have seen it,
within a window (Notice.ack_within_s). A member acknowledges by SMS (ACK 12, OK 12, ACK, or 1 when they
have exactly one open request), by the signed link of the email (POST only), by a reply with ACK, or by
pressing 1 on the escalation call. One row per (notice, member), a unique constraint: repeating an
acknowledgement changes nothing and its first time and channel are kept."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from relay.infra.storage import insert_if_new
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Delivery, Member, Notice, utcnow
from relay.model.urgent import Acknowledgement, EscalationStep

CHANNELS = ("sms", "email", "voice", "web")
OPEN_FOR = timedelta(days=7)  # a request without an expiry stays open this long after the notice went out


def requests_ack(notice: Notice) -> bool:
    return notice.ack_within_s is not None


def is_open(notice: Notice, now: datetime) -> bool:
    """The notice was sent, asks for acknowledgement, and has neither expired nor been withdrawn."""
    if not requests_ack(notice) or notice.status != "sent" or notice.sent_at is None:
        return False
    if notice.expires_at is not None:
        return notice.expires_at > now
    return notice.sent_at + OPEN_FOR > now


def was_sent_to(session: Session, notice: Notice, member_id: int) -> bool:
    """Whether the notice was planned for the member (on any channel)."""
    return bool(session.scalar(select(exists().where(deliveries_filter(notice), Delivery.member_id == member_id))))


def open_requests(session: Session, member_id: int, now: datetime | None = None) -> list[int]:
    """Ids of the notices the member was sent, that ask for acknowledgement and that they have not yet
    acknowledged, oldest first."""
    now = now or utcnow()
    acked = select(Acknowledgement.id).where(Acknowledgement.notice_id == Notice.id,
                                             Acknowledgement.member_id == member_id)
    candidates = session.scalars(select(Notice).where(
        Notice.ack_within_s.is_not(None), Notice.status == "sent", Notice.sent_at >= now - OPEN_FOR,
        or_(Notice.expires_at.is_(None), Notice.expires_at > now), ~exists(acked)).order_by(Notice.id))
    return [n.id for n in candidates if is_open(n, now) and was_sent_to(session, n, member_id)]


def record(session: Session, notice_id: int, member_id: int, channel: str, inbound_event_id: int | None = None,
           now: datetime | None = None) -> bool:
    """Store the acknowledgement; True when it is new (False: already acknowledged, nothing changes)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown acknowledgement channel {channel!r}")
    return insert_if_new(session, Acknowledgement.__table__, dict(
        notice_id=notice_id, member_id=member_id, channel=channel, inbound_event_id=inbound_event_id,
        acknowledged_at=now or utcnow())) is not None


def acknowledged(session: Session, notice_id: int, member_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Acknowledgement.notice_id == notice_id,
                                                     Acknowledgement.member_id == member_id))))


@dataclass(frozen=True)
class MemberAck:
    member_id: int
    name: str
    state: str  # acknowledged | waiting | escalated | unreachable
    acknowledged_at: datetime | None
    channel: str | None
    steps: dict[str, datetime]  # escalation step -> when it was taken
    reached_on: tuple[str, ...]  # channels a delivery of the notice went out on (or is queued)

    def as_dict(self) -> dict:
        return {"member_id": self.member_id, "name": self.name, "state": self.state,
                "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
                "channel": self.channel, "reached_on": list(self.reached_on),
                "escalation": {step: at.isoformat() for step, at in self.steps.items()}}


GONE = ("failed", "undelivered", "opted_out")
STATES = ("acknowledged", "waiting", "escalated", "unreachable")


def table(session: Session, notice: Notice) -> list[MemberAck]:
    """Each recipient of the notice with where they stand: acknowledged, waiting (within the window or no step
    taken yet), escalated (some step taken), or unreachable (no delivery of the notice could be made)."""
    reached: dict[int, set[str]] = {}
    failed: dict[int, int] = {}
    total: dict[int, int] = {}
    for member_id, channel, status in session.execute(select(Delivery.member_id, Delivery.channel, Delivery.status)
                                                      .where(deliveries_filter(notice))):
        if member_id is None:
            continue
        total[member_id] = total.get(member_id, 0) + 1
        if status in GONE:
            failed[member_id] = failed.get(member_id, 0) + 1
        else:
            reached.setdefault(member_id, set()).add(channel)
    acks = {a.member_id: a for a in session.scalars(select(Acknowledgement).where(
        Acknowledgement.notice_id == notice.id))}
    steps: dict[int, dict[str, datetime]] = {}
    for step in session.scalars(select(EscalationStep).where(EscalationStep.notice_id == notice.id,
                                                             EscalationStep.step != "report")):
        steps.setdefault(step.member_id, {})[step.step] = step.created_at
    names = dict(session.execute(select(Member.id, Member.name).where(Member.id.in_(list(total) or [0]))).all())
    rows = []
    for member_id in sorted(total):
        ack = acks.get(member_id)
        if ack is not None:
            state = "acknowledged"
        elif failed.get(member_id, 0) == total[member_id]:
            state = "unreachable"
        elif steps.get(member_id):
            state = "escalated"
        else:
            state = "waiting"
        rows.append(MemberAck(member_id, names.get(member_id, ""), state, ack.acknowledged_at if ack else None,
                              ack.channel if ack else None, steps.get(member_id, {}),
                              tuple(sorted(reached.get(member_id, ())))))
    return rows


def counts(rows: list[MemberAck]) -> dict:
    """{"acknowledged", "waiting", "escalated", "unreachable", "total", "escalated_by_step": {step: n}}."""
    result: dict = dict.fromkeys(STATES, 0)
    by_step: dict[str, int] = {}
    for row in rows:
        result[row.state] += 1
        if row.state == "escalated":
            for step in row.steps:
                by_step[step] = by_step.get(step, 0) + 1
    result["total"] = len(rows)
    result["escalated_by_step"] = by_step
    return result
