"""issue 17, the urgent path: acknowledgements, the confirmation codes of coordinator commands by SMS or
email, and the escalation ladder's steps. Every "at most once" here is a unique constraint."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relay.model.tables import Base, utcnow


class Acknowledgement(Base):
    """A member has seen a notice that asked for acknowledgement: once per (notice, member), whatever
    channel it came by first (sms, email, voice, web)."""

    __tablename__ = "acknowledgements"
    __table_args__ = (UniqueConstraint("notice_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10))  # sms | email | voice | web
    inbound_event_id: Mapped[int | None] = mapped_column(Integer)
    acknowledged_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConfirmationCode(Base):
    """A coordinator command waiting for `SEND <code>`: bound to the number (or address) it came from and
    to what it confirms, single-use (used_at), dead after expires_at. Only the code's SHA-256 is kept."""

    __tablename__ = "confirmation_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(20))  # send | hold | resume
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # the phone (E.164) or email address it was issued to
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(20), default="")  # sent | cancelled | held | resumed


class EscalationStep(Base):
    """One rung of a notice's escalation for one member (channels, call) or for its author (report).
    The unique constraint is what makes each step happen at most once, across workers and restarts."""

    __tablename__ = "escalation_steps"
    __table_args__ = (UniqueConstraint("notice_id", "member_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(20))  # channels | call | report
    detail: Mapped[str] = mapped_column(Text, default="")  # what was done (channels, "no calls", ...)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
