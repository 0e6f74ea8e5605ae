"""The relational model: members, lists, cases and their threads, posts, deliveries, inbound events.

Uniqueness that the product promises (one post per inbound message, one delivery per
post x member x channel, one event per provider message id) is a database constraint here,
never a check in Python.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps are UTC everywhere: stored naive-UTC on SQLite, timestamptz on PostgreSQL, and
    always handed back timezone-aware, so comparisons never mix naive and aware values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect, coltype):
        """On PostgreSQL relay's sessions speak UTC (relay/infra/db.make_engine), so psycopg's values are
        aware and in timezone.utc already: passed through, converted only if some other connection's are
        not. Issue 18: the general path below cost ~15 % of a bulk batch's calling thread."""
        if dialect.name != "postgresql":
            return super().result_processor(dialect, coltype)
        utc = timezone.utc

        def process(value):
            if value is None or value.tzinfo is utc:
                return value
            return value.astimezone(utc) if value.tzinfo is not None else value.replace(tzinfo=utc)

        return process

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


ROLES = ("member", "coordinator", "admin", "contributor")  # contributor: may email cases to the intake address
LANGUAGES = ("en", "ko")


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    short_name: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    language: Mapped[str] = mapped_column(String(8), default="en")
    roles: Mapped[str] = mapped_column(String(100), default="member")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_discussion: Mapped[bool] = mapped_column(Boolean, default=True)
    email_discussion: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_opted_out_at: Mapped[datetime | None] = mapped_column()
    email_opted_out_at: Mapped[datetime | None] = mapped_column()
    # Hard bounces since the last successful change of address; over the limit, email stops
    # (email_suspended_at) until a coordinator undoes it.
    email_hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    email_suspended_at: Mapped[datetime | None] = mapped_column()
    # issue 17: NO CALLS by SMS or on the preference page: escalation never rings this member
    calls_ok: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # issue 19: WhatsApp. The number defaults to `phone` (see whatsapp_number); WhatsApp needs a recorded
    # opt-in (consent_events says how) before anything is sent; free-form only within 24 hours of the
    # member's last WhatsApp message to us (whatsapp_last_inbound_at), else a template.
    whatsapp: Mapped[str | None] = mapped_column(String(20), unique=True)
    whatsapp_discussion: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    whatsapp_opted_in_at: Mapped[datetime | None] = mapped_column()
    whatsapp_opted_out_at: Mapped[datetime | None] = mapped_column()
    whatsapp_last_inbound_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(back_populates="member", cascade="all")

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(";") if r)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this member chose for case discussion (whether or not reachable now)."""
        return tuple(c for c, on in (("sms", self.sms_discussion), ("email", self.email_discussion),
                                     ("whatsapp", self.whatsapp_discussion)) if on)

    @property
    def whatsapp_number(self) -> str | None:
        """The member's WhatsApp number (E.164): their own `whatsapp`, else their phone."""
        return self.whatsapp or self.phone

    def opted_out_at(self, channel: str) -> datetime | None:
        """When the member opted out of `channel` (None: not opted out)."""
        return {"sms": self.sms_opted_out_at, "email": self.email_opted_out_at,
                "whatsapp": self.whatsapp_opted_out_at}.get(channel)

    def address_for(self, channel: str) -> str | None:
        """The member's address on `channel`: phone, email or WhatsApp number (E.164, no prefix)."""
        return {"sms": self.phone, "email": self.email, "whatsapp": self.whatsapp_number}.get(channel)

    @property
    def takes_whatsapp(self) -> bool:
        """Whether case discussion may go to this member on WhatsApp now: chosen, a number, opted in, not out."""
        return bool(self.active and self.whatsapp_number and self.whatsapp_discussion
                    and self.whatsapp_opted_in_at is not None and self.whatsapp_opted_out_at is None)

    @property
    def takes_email(self) -> bool:
        return bool(self.active and self.email and self.email_discussion and self.email_opted_out_at is None
                    and self.email_suspended_at is None)

    @property
    def takes_sms(self) -> bool:
        """Whether case discussion may be sent to this member by SMS now."""
        return bool(self.active and self.phone and self.sms_discussion and self.sms_opted_out_at is None)


class MemberList(Base):
    __tablename__ = "member_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # issue 16: this list's own patient-information guard mode (hold | warn | off), over RELAY_GUARD; for a
    # list whose members share patient data under their own agreement. None: RELAY_GUARD.
    guard: Mapped[str | None] = mapped_column(String(10))

    memberships: Mapped[list["Membership"]] = relationship(back_populates="member_list", cascade="all")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("list_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("member_lists.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship(back_populates="memberships")
    member_list: Mapped[MemberList] = relationship(back_populates="memberships")


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    title: Mapped[str] = mapped_column(String(300))
    chief_complaint: Mapped[str] = mapped_column(Text, default="")
    symptoms: Mapped[str] = mapped_column(Text, default="")
    exposure_history: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open")  # draft | open | closed
    visibility: Mapped[str] = mapped_column(String(20), default="public")  # public | members
    views: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    thread: Mapped["Thread"] = relationship(back_populates="case", uselist=False)

    @property
    def code(self) -> str:
        return f"C{self.number}"


class Thread(Base):
    """The one discussion of a case, across SMS, email and the web."""

    __tablename__ = "threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="thread")
    posts: Mapped[list["Post"]] = relationship(back_populates="thread", order_by="Post.id")


class Participant(Base):
    """A member following a case discussion (notified about it, or posted to it)."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("thread_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(20), default="notified")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(20), default="reply")  # reply | notice
    channel: Mapped[str] = mapped_column(String(10))  # sms | email | whatsapp | web | console | cli | api
    body: Mapped[str] = mapped_column(Text)
    # One post per inbound message, even when processing runs twice.
    inbound_event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_events.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # issue 20: read by day

    thread: Mapped[Thread] = relationship(back_populates="posts")
    author: Mapped[Member | None] = relationship()


class Notice(Base):
    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # new_case | guideline | announcement | correction
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    lists: Mapped[str] = mapped_column(String(500))
    title: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(10), default="routine")  # routine | urgent
    channels: Mapped[str] = mapped_column(String(20), default="sms;email")
    status: Mapped[str] = mapped_column(String(20), default="sent")  # draft | scheduled | sending | sent | cancelled
    expires_at: Mapped[datetime | None] = mapped_column()
    scheduled_for: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    corrects_notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # issue 17: acknowledgement requested within this many seconds (NULL: none), and the escalation
    # ladder's step length (NULL: RELAY_ESCALATION_STEP) — relay/notices/acks.py, escalation.py
    ack_within_s: Mapped[int | None] = mapped_column(Integer)
    escalation_step_s: Mapped[int | None] = mapped_column(Integer)


class InboundEvent(Base):
    """A raw provider webhook, kept before it is acknowledged."""

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))  # twilio
    kind: Mapped[str] = mapped_column(String(20))  # sms | status
    dedupe_key: Mapped[str] = mapped_column(String(120))
    raw: Mapped[str] = mapped_column(Text)
    # Email webhooks: the exact HTTP body (it may be binary multipart) and its Content-Type.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(200), default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
    # Times a worker started processing it; past a limit it is set aside as failed (a poison
    # message), not retried forever. Waiting in a long queue does not count.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the sweeper last re-queued it, so a backlog is not re-queued every sweep.
    dispatched_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(40), default="")
    rules_fired: Mapped[list] = mapped_column(JSON, default=list)
    detail: Mapped[str] = mapped_column(Text, default="")
    # When the sweeper emptied raw and payload (clinical text) after RELAY_RAW_RETENTION (relay/inbound/retention.py);
    # the row's metadata and outcome, and the post it made, stay.
    raw_purged_at: Mapped[datetime | None] = mapped_column()
    # Why the last attempt failed (`relay events list`); a transient database error is not kept here.
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    # issue 16: the patient-information guard's verdict on the message (pass | hold | warn | off; empty: not
    # checked) and the kinds it found — never the values.
    guard_verdict: Mapped[str] = mapped_column(String(10), default="", server_default="")
    guard_kinds: Mapped[list | None] = mapped_column(JSON, default=list)

    __table_args__ = (
        UniqueConstraint("provider", "kind", "dedupe_key"),
        Index("ix_inbound_unprocessed", "processed_at", "received_at"),
        # a sender's recent events: the inbound limits (relay/inbound/limits.py), per event and per batch
        Index("ix_inbound_sender_time", "sender", "received_at"),
        # what the drain task claims (relay/inbound/drain.py): stored, never queued, not processed
        Index("ix_inbound_waiting", "id", postgresql_where=text("processed_at IS NULL AND dispatched_at IS NULL"),
              sqlite_where=text("processed_at IS NULL AND dispatched_at IS NULL")),
        # what the raw-body purge reads, oldest first: only the rows still holding a body
        Index("ix_inbound_raw_kept", "received_at", postgresql_where=text("raw_purged_at IS NULL"),
              sqlite_where=text("raw_purged_at IS NULL")),
    )


class Delivery(Base):
    """One message to one member (or address) on one channel; its status moves by the transition table."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # post:<id>:<member>:<channel>, or reply:<inbound event id>:<purpose> — unique, so planning twice
    # creates nothing new.
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    purpose: Mapped[str] = mapped_column(String(20))  # relay | notice | confirmation | help | ...
    channel: Mapped[str] = mapped_column(String(10), default="sms")
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    to_address: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()
    provider_message_id: Mapped[str | None] = mapped_column(String(64))  # unique where set (the index below)
    error_code: Mapped[str | None] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # issue 20: read by day
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_deliveries_member_case", "member_id", "created_at"),
        # issue 18 (migration 0023): each holds only the rows read through it, so a claim or a record of a
        # broadcast's delivery writes fewer index entries
        Index("ix_deliveries_status", "status", "next_attempt_at",
              postgresql_where=text("status IN ('queued', 'sending')"),
              sqlite_where=text("status IN ('queued', 'sending')")),
        Index("uq_deliveries_provider_message_id", "provider_message_id", unique=True,
              postgresql_where=text("provider_message_id IS NOT NULL"),
              sqlite_where=text("provider_message_id IS NOT NULL")),
    )


class EmailBounce(Base):
    """One bounce or complaint about mail we sent, per recipient, with the report kept."""

    __tablename__ = "email_bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(20))  # hard | soft | complaint
    status: Mapped[str] = mapped_column(String(20), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    inbound_event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookNonce(Base):
    """Signed-webhook nonces already accepted (Mailgun's token): a reuse is a replay."""

    __tablename__ = "webhook_nonces"
    __table_args__ = (UniqueConstraint("provider", "nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    nonce: Mapped[str] = mapped_column(String(200))
    inbound_event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_events.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentEvent(Base):
    """Append-only log of opt-out and opt-in changes, with time and source."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(20))  # opt_out | opt_in
    source: Mapped[str] = mapped_column(String(60))  # sms:STOP, provider:21610, ...
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # issue 20: read by day


class AuditEvent(Base):
    """Append-only record of who did what that matters: broadcasts, publications, holds, opt-out changes.

    No foreign keys: the record outlives the rows it names. On PostgreSQL a trigger refuses UPDATE and
    DELETE of these rows (migration 0004)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(60), index=True)  # notice.send, case.publish, hold.on, ...
    subject: Mapped[str] = mapped_column(String(120), default="")  # notice:12, case:C3, member:5
    actor: Mapped[str] = mapped_column(String(120))  # member:3, cli:root, api-token, scheduler, provider:twilio
    actor_member_id: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(60))  # cli | api | console | sms | email | web | provider | beat
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CaseImage(Base):
    """An image filed under a case (uploaded, mailed, sent by MMS): stored re-encoded without
    metadata, with a thumbnail. The sha256 of the original bytes is unique per case, so a retried
    fetch or a mail sent twice files nothing twice. An MMS image is a row before it is fetched
    (status pending, one per inbound event x media index: source_key), and stays one when the fetch
    fails for good (status failed, with the error), so the case page can say so."""

    __tablename__ = "case_images"
    __table_args__ = (UniqueConstraint("case_id", "sha256"), UniqueConstraint("source_key"))

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    source: Mapped[str] = mapped_column(String(20))  # console | email | mms | intake | api
    source_key: Mapped[str | None] = mapped_column(String(120))  # mms:<event id>:<index>
    source_url: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="stored")  # pending | stored | failed | duplicate | held
    sha256: Mapped[str | None] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(40), default="")
    stored_name: Mapped[str] = mapped_column(String(200), default="")
    thumbnail_name: Mapped[str] = mapped_column(String(200), default="")
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Guideline(Base):
    """A guideline in the library; its text lives in numbered versions, each saying what changed."""

    __tablename__ = "guidelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    views: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list["GuidelineVersion"]] = relationship(back_populates="guideline",
                                                              order_by="GuidelineVersion.number")


class GuidelineVersion(Base):
    __tablename__ = "guideline_versions"
    __table_args__ = (UniqueConstraint("guideline_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    guideline_id: Mapped[int] = mapped_column(ForeignKey("guidelines.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    changes: Mapped[str] = mapped_column(Text)  # what changed since the previous version
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)

    guideline: Mapped[Guideline] = relationship(back_populates="versions")
    author: Mapped[Member | None] = relationship()


class MemberPassword(Base):
    """A member's console/library password, as an argon2id hash (relay/access/accounts.py). Kept apart from
    members so the hash never rides along wherever a Member is loaded or serialised."""

    __tablename__ = "member_passwords"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # raised by signing out: part of the session stamp, so every cookie issued before stops working
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SendingHold(Base):
    """The emergency hold switch: one row (id 1); while `held`, no outbound message leaves (relay/outbound/hold.py)."""

    __tablename__ = "sending_hold"

    id: Mapped[int] = mapped_column(primary_key=True)
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(300), default="")
    changed_by: Mapped[str] = mapped_column(String(120), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Heartbeat(Base):
    """When something periodic last ran (name "sweep": relay/infra/heartbeats.py), so a worker can say when it stopped."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column()


class ApiToken(Base):
    """A member's bearer token for the JSON API. Only the SHA-256 of the secret is kept (a leak of the
    table reveals no usable token); `prefix` is its first characters, shown to tell tokens apart. The
    token carries no roles of its own: each request takes its member's roles as they are now."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the whole token
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    member: Mapped[Member] = relationship()


# --- issue 5: the consent ladder, quiet hours, digests (relay/members/ladder.py, relay/digests/building.py) ---


class ChannelPreference(Base):
    """A member's place on the consent ladder for one channel, below STOP (which stays on
    Member.*_opted_out_at): every message, digest only or urgent only; a pause; quiet hours.
    No row means the defaults (everything, no pause, quiet 22:00-07:00 local)."""

    __tablename__ = "channel_preferences"
    __table_args__ = (UniqueConstraint("member_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))  # sms | email
    mode: Mapped[str] = mapped_column(String(20), default="all")  # all | digest | urgent_only
    paused_until: Mapped[datetime | None] = mapped_column()
    # Local HH:MM; equal means none; NULL means the default (RELAY_QUIET_HOURS, 22:00-07:00).
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CaseMute(Base):
    """MUTE C123: that case's posts and notices never reach the member on the channel."""

    __tablename__ = "case_mutes"
    __table_args__ = (UniqueConstraint("member_id", "case_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DigestSubscription(Base):
    """Someone who gets the digest on one address: a member switched to digest, or anyone who
    subscribed on the web form (double opt-in; the time, address and form kept as evidence)."""

    __tablename__ = "digest_subscriptions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10), default="email")  # email | sms
    address: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    frequency: Mapped[str] = mapped_column(String(10), default="daily")  # daily | weekly
    hour: Mapped[int] = mapped_column(Integer, default=7)  # local delivery hour
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | active | unsubscribed
    consent_ip: Mapped[str] = mapped_column(String(64), default="")
    consent_form: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    unsubscribed_at: Mapped[datetime | None] = mapped_column()


class Digest(Base):
    """One digest per subscription per period (a local date, or an ISO week): the UNIQUE
    constraint is what makes a retried task or two beat processes build it once."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("subscription_id", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("digest_subscriptions.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(20))  # 2026-11-28 | 2026-W48
    window_start: Mapped[datetime] = mapped_column()
    window_end: Mapped[datetime] = mapped_column()
    items: Mapped[int] = mapped_column(Integer, default=0)  # 0: nothing new, nothing sent
    subject: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ListDigestChoice(Base):
    """A member's "digest only" for one list on one channel: routine notices sent only to lists the member
    chose this for reach them in the digest instead (relays follow cases, not lists, and are unaffected)."""

    __tablename__ = "list_digest_choices"
    __table_args__ = (UniqueConstraint("member_id", "list_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(ForeignKey("member_lists.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HeldMessage(Base):
    """Issue 16: a member's message the patient-information guard held: stored (nothing lost), not relayed,
    until its author sends `SEND <code>` (released as written, once), `DROP <code>`, a corrected message,
    or a coordinator decides; past `expires_at` the sweeper drops it. The body is emptied when it is
    dropped or expires (it is clinical text with a patient identifier in it)."""

    __tablename__ = "held_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    # The inbound message it came from (SMS, email); one hold per message, even when processing runs twice.
    inbound_event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_events.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))  # sms | email | web
    body: Mapped[str] = mapped_column(Text, default="")
    kinds: Mapped[list] = mapped_column(JSON, default=list)
    findings: Mapped[list] = mapped_column(JSON, default=list)  # [{kind, start, end, confidence}], no values
    status: Mapped[str] = mapped_column(String(12), default="held")  # held | released | dropped | expired
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str] = mapped_column(String(100), default="")
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"), unique=True)

    __table_args__ = (Index("ix_held_waiting", "expires_at", postgresql_where=text("status = 'held'"),
                            sqlite_where=text("status = 'held'")),)
# --- issue 20: reach — daily figures, never an address (relay/library/readership.py, relay/reach/) ---


class CaseDayViews(Base):
    """A case's library page views on one UTC day (bots by user agent left out): the per-day series
    beside Case.views, incremented by one atomic upsert per view."""

    __tablename__ = "reach_case_views"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    views: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_reach_case_views_day", "day"),)


class ReaderDay(Base):
    """How many distinct readers loaded a library page on one UTC day: `visitors` (signed out, counted
    by a keyed hash whose salt lives only in Redis or memory for that day) and `members` (signed in).
    Only the counts are kept here; the hashes and the salt never reach the database."""

    __tablename__ = "reach_readers"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    visitors: Mapped[int] = mapped_column(Integer, default=0)
    members: Mapped[int] = mapped_column(Integer, default=0)


class ReachDaily(Base):
    """A rollup: one count per closed UTC day, series (deliveries, replies, notices) and label
    (`sms:delivered`, `email`, ...), written by the sweeper (relay/reach/rollups.py) so the Reach page reads
    a year in a few hundred rows rather than millions of deliveries."""

    __tablename__ = "reach_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    series: Mapped[str] = mapped_column(String(20), primary_key=True)
    label: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class MemberCountry(Base):
    """The country of a member's phone number (ISO 3166 alpha-2, from phonenumbers; "" when it has
    none), cached with the number it was read from so a changed number is read again
    (relay/reach/rollups.py): parsing 100,000 numbers on each page load would take seconds."""

    __tablename__ = "reach_member_countries"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), default="")
    country: Mapped[str] = mapped_column(String(2), default="", index=True)


class ReachPublication(Base):
    """Whether an admin published the headline figures (one row, id 1): the library front page shows
    "N members in M countries, K readers this month" only while `headline` is on."""

    __tablename__ = "reach_publication"

    id: Mapped[int] = mapped_column(primary_key=True)
    headline: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str] = mapped_column(String(120), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
