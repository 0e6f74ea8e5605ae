"""Sending a batch of a broadcast's deliveries (one bulk task, ~100 deliveries) close to what the
providers can take: one statement claims the batch, one query loads it with its members, each
notice email is rendered once per language and each digest email once per distinct digest, and
only the recipient's own parts (To, Message-ID, reply, unsubscribe and preference tokens) are put in
per recipient, the sends run concurrently on threads over reused
connections (a requests session per thread for Twilio, a small SMTP connection pool), and one
statement records what the providers accepted. With RELAY_SEND_ASYNC on (the default) the sends run as
coroutines on the process's event loop instead of threads (relay/outbound/async_batch.py).

The guarantees are those of relay.outbound.sending.send_delivery, delivery by delivery: the claim is the
same atomic UPDATE (each delivery is won by exactly one caller; the lease lets a crashed worker's
deliveries be taken again), the send-time checks are the same function (relay/outbound/checks.py: an
expired notice is never sent late; a member who opted out, paused or whose quiet hours began since
planning is handled as a single send handles it), and a failure or a rate-limit deferral goes through
sending's own handling. Anything this path does not know how to pre-render (neither a notice nor a
digest, an address needing SMTPUTF8) is built by sending's own `outbound_message` as usual."""
from __future__ import annotations

import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formataddr
from types import SimpleNamespace
from typing import Sequence

from sqlalchemy import String, any_, bindparam, case, or_, select, text, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.infra.signing import notice_message_id, post_message_id, reply_token, signed_id, unsubscribe_token
from relay.infra.storage import in_values
from relay.model.delivery_states import ACCEPTED, FAILED, SENDING
from relay.model.messages import OutboundMessage, SendError
from relay.model.notice_refs import notice_of
from relay.model.tables import Case, Delivery, InboundEvent, Member, Notice, Post, Thread, utcnow
from relay.outbound import async_batch, hold
from relay.outbound import checks as send_checks
from relay.outbound.bursts import check_burst
from relay.outbound.deliveries import claim_many, move
from relay.outbound.queueing import dispatch_deliveries
from relay.outbound.sending import SendOutcome, outbound_message, record_failure
from relay.outbound.template_cache import NOTICE_TEMPLATES, notice_key
from relay.render import mail
from relay.render.digest_mail import DigestEmails

log = logging.getLogger(__name__)

# Placeholders rendered into a notice email once per language, replaced per recipient. ASCII words
# that no template, header folding or escaping changes (the body is sent 8bit, not re-encoded).
_TOKEN = b"relayunsubscribetokenzq"
_REPLY = b"relayreplytokenzq"
_PREFS = b"relaypreferencestokenzq"
_NAME = "Relaynameplaceholderzq"
_EMAIL = "relayaddressplaceholderzq@placeholder.invalid"
_ADDRESS = formataddr((_NAME, _EMAIL)).encode()  # the To line's placeholder, as the template renders it


@dataclass
class BatchReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retry: int = 0
    deferred: int = 0  # back in the queue for a rate-limit slot or the end of quiet hours (not an attempt)
    outcomes: list[SendOutcome] = field(default_factory=list)

    def add(self, outcome: SendOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.result == "sent":
            self.sent += 1
        elif outcome.result == "retry":
            self.retry += 1
        elif outcome.result in ("deferred", "waiting"):
            self.deferred += 1
        elif outcome.result in ("skipped", "held"):
            self.skipped += 1
        else:
            self.failed += 1


class _Pool:
    """One thread pool per process (rebuilt after a fork): the sends of a batch run concurrently."""

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._pid = None
        self._lock = threading.Lock()

    def get(self, size: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="relay-send")
                self._pid = os.getpid()
            return self._pool


_POOL = _Pool()


class NoticeEmails:
    """A notice's email for each recipient: rendered once per (notice, language) with placeholders,
    then the recipient's own address and tokens put in. The same headers and text as compose()."""

    def __init__(self, session, settings):
        self.session, self.settings = session, settings
        self._templates: dict[tuple, tuple[bytes, str] | None] = {}

    def for_delivery(self, delivery: Delivery, member: Member | None, notice: Notice | None) -> tuple[bytes, str]:
        """(raw message, Message-ID) for one delivery."""
        # issue 17: a notice asking for acknowledgement carries each member's own signed link: composed whole;
        # so is an email to an address that is not a plain ASCII addr-spec (mail.pre_rendered_to)
        to = mail.pre_rendered_to(member.name, member.email) if member is not None else None
        if notice is not None and notice.ack_within_s is None and member is not None and to is not None:
            key = (notice.id, member.language)
            if key not in self._templates:  # issue 18: kept across the broadcast's batches (template_cache.py)
                self._templates[key] = NOTICE_TEMPLATES.get(
                    self.settings, notice_key(notice, delivery.post_id, member.language),
                    lambda: self._template(delivery, notice, member.language))
            template = self._templates[key]
            if template is not None:
                return self._personalise(template[0], delivery, member, to), template[1]
        message = mail.compose(self.session, self.settings, delivery)  # anything unusual: composed whole
        return message.as_bytes(), str(message["Message-ID"]).strip("<>")

    def _template(self, delivery: Delivery, notice: Notice, language: str | None) -> tuple[bytes, str] | None:
        s = self.settings
        language = language or "en"
        token = _TOKEN.decode()
        unsubscribe = (f"{s.public_base_url}/unsubscribe/{token}",
                       f"mailto:unsubscribe+{token}@{s.email_domain}?subject=unsubscribe")
        placeholder = SimpleNamespace(name=_NAME, email=_EMAIL)
        if delivery.post_id is None:
            subject, template, context = mail.notice_parts(s, notice, None, language, unsubscribe[0], notice.body)
            context["preferences_url"] = f"{s.public_base_url}/preferences/{_PREFS.decode()}"
            references = []
            if notice.corrects_notice_id is not None:
                references = [notice_message_id(s.secret(), notice.corrects_notice_id, s.email_domain)]
            message_id = notice_message_id(s.secret(), notice.id, s.email_domain)
            message = mail.compose_message(s, placeholder, s.network_name, subject, notice.sent_at or notice.created_at,
                                    message_id, references, None, context["url"], True, unsubscribe,
                                    *mail._parts(s, template, language, context))
        else:
            post = self.session.get(Post, delivery.post_id)
            if post is None or post.kind != "notice":
                return None
            thread = self.session.get(Thread, post.thread_id)
            case_ = self.session.get(Case, thread.case_id)
            subject, template, context = mail.notice_parts(s, notice, case_, language, unsubscribe[0], post.body)
            context["preferences_url"] = f"{s.public_base_url}/preferences/{_PREFS.decode()}"
            reply_to = formataddr((f"{case_.code} {s.network_name}", f"reply+{_REPLY.decode()}@{s.email_domain}"))
            message_id = post_message_id(s.secret(), post.id, s.email_domain)
            message = mail.compose_message(s, placeholder, s.network_name, subject, post.created_at, message_id,
                                    mail.thread_references(self.session, s, post), reply_to,
                                    s.case_url(case_.code), True, unsubscribe,
                                    *mail._parts(s, template, language, context))
        text, html = (part.get_content() for part in message.iter_parts())
        parts = list(message.iter_parts())
        parts[0].set_content(text, cte="8bit")  # sent as is: the placeholders stay whole
        parts[1].set_content(html, subtype="html", cte="8bit")
        raw = message.as_bytes()
        if _ADDRESS not in raw or _TOKEN not in raw:
            log.warning("notice %s: the email template could not be pre-rendered; composing per recipient", notice.id)
            return None
        return raw, message_id

    def _personalise(self, template: bytes, delivery: Delivery, member: Member, to: bytes) -> bytes:
        s = self.settings
        secret = s.secret()
        raw = template.replace(_ADDRESS, to)
        raw = raw.replace(_TOKEN, unsubscribe_token(secret, member.id).encode())
        raw = raw.replace(_PREFS, signed_id(secret, "preferences", member.id).encode())
        if delivery.case_id is not None and _REPLY in raw:
            raw = raw.replace(_REPLY, reply_token(secret, member.id, delivery.case_id).encode())
        return raw


# On PostgreSQL each delivery's member by its primary key: a LATERAL subquery that the planner may not merge into
# the join (OFFSET 0), so it is one index lookup per delivery. As a plain join, the planner hashed the whole
# members table for every batch (a seq scan of 10,000 members: 4-7 ms a batch against ~1 ms, and growing with
# the network; issue 18, docs/scale.md). The same rows and entities either way. Made on first use: building it
# configures the ORM's mappers, which importing this module should not (the workers' warm-up does it).
@functools.cache
def _member_of_delivery():
    return aliased(Member, select(Member).where(Member.id == Delivery.member_id).offset(0).lateral())


def _load(session, claimed: Sequence[int]):
    """The claimed deliveries with their members, in id order: one query for the batch (elsewhere than on
    PostgreSQL, SQLite in the tests, which has no LATERAL, a plain join)."""
    if session.get_bind().dialect.name == "postgresql":
        member = _member_of_delivery()
        query = select(Delivery, member).outerjoin(member, true())
    else:
        query = select(Delivery, Member).outerjoin(Member, Member.id == Delivery.member_id)
    return session.execute(query.where(in_values(session, Delivery.id, claimed)).order_by(Delivery.id)).all()


def _prepare(session, settings, delivery_ids: Sequence[int], report: BatchReport,
             fallbacks: list[int] | None = None):
    """Claim the batch and build its messages: (messages, attempts by id). WhatsApp deliveries that fall
    back to other channels add those deliveries' ids to `fallbacks` (queued after the commit)."""
    now = utcnow()
    if hold.is_on(session):  # the emergency hold (relay/outbound/hold.py): the batch stays queued, unsent
        for delivery_id in delivery_ids:
            hold.defer(session, delivery_id, now)
            report.add(SendOutcome(delivery_id, "held"))
        return [], {}
    claimed = claim_many(session, delivery_ids, settings.send_lease, now)
    for delivery_id in sorted(set(delivery_ids) - set(claimed)):
        report.add(SendOutcome(delivery_id, "skipped"))
    if not claimed:
        return [], {}
    rows = _load(session, claimed)
    notices: dict[tuple, Notice | None] = {}
    claimed_rows = []
    attempts = {}
    for delivery, member in rows:
        attempts[delivery.id] = delivery.attempts
        key = (delivery.purpose, delivery.post_id, delivery.dedupe_key.rsplit(":", 2)[0])
        if key not in notices:
            notices[key] = notice_of(session, delivery)
        claimed_rows.append((delivery, member, notices[key]))
    # the same send-time checks as a single send (relay/outbound/checks.py), once for the whole batch
    ready, refused = send_checks.check(session, settings, claimed_rows, now, fallbacks)
    for delivery_id, result in sorted(refused.items()):
        report.add(SendOutcome(delivery_id, result))
    emails = NoticeEmails(session, settings)
    digests = DigestEmails(session, settings, [item.delivery for item in ready if item.delivery.channel == "email"])
    messages = []
    for item in ready:
        delivery, member, notice = item.delivery, item.member, item.notice
        try:
            if delivery.channel == "email" and (delivery.post_id is not None or delivery.purpose == "notice"):
                raw, message_id = emails.for_delivery(delivery, member, notice)
                message = OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=raw,
                                          message_id=message_id)
            elif delivery.channel == "email" and delivery.purpose == "digest":  # a digest run (relay/digests/building.py)
                raw, message_id = digests.for_delivery(delivery, member)
                message = OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=raw,
                                          message_id=message_id)
            else:  # anything not pre-rendered is built exactly as a single send builds it
                message = outbound_message(session, settings, delivery)
            message = item.limits(message)
        except Exception as exc:  # a message we cannot build will not build next time either
            log.exception("delivery %s: cannot compose", delivery.id)
            move(session, delivery, FAILED, error_code="compose", error_message=f"{type(exc).__name__}: {exc}",
                 lease_until=None)
            report.add(SendOutcome(delivery.id, "failed"))
            continue
        messages.append(message)
    return messages, attempts


def _send_one(services, message: OutboundMessage, attempts: int):
    """(message, result, error, outcome already recorded): a rate-limit deferral is recorded at once, in
    this thread, because the slot it booked may come before the rest of the batch is done."""
    try:
        return message, services.sender(message.channel).send(message), None, None
    except SendError as error:
        if error.throttled:
            return message, None, error, record_failure(services, message.delivery_id, attempts, error)
        return message, None, error, None
    except Exception as exc:  # a sender bug must not lose the rest of the batch
        log.exception("delivery %s: unexpected sender error", message.delivery_id)
        return message, None, SendError(f"{type(exc).__name__}: {exc}", code="client", retryable=True), None


_ACCEPT = (update(Delivery.__table__)  # type: ignore[arg-type]  # a model's __table__ is typed FromClause; it is the Table
           .where(Delivery.__table__.c.id == bindparam("delivery_id"))
           .values(status=case((Delivery.__table__.c.status == SENDING, ACCEPTED), else_=Delivery.__table__.c.status),
                   lease_until=case((Delivery.__table__.c.status == SENDING, None),
                                    else_=Delivery.__table__.c.lease_until),
                   provider_message_id=bindparam("provider_message_id"), sent_at=bindparam("now"),
                   updated_at=bindparam("now"), error_code=None, error_message=None))


# What the providers accepted, on PostgreSQL in one statement for the batch (the ids and provider ids as two
# arrays): an executemany of one UPDATE per delivery cost the worker ~0.05 ms of CPU per message (issue 18).
# The same values as _ACCEPT, row by row: a delivery moved on meanwhile (a callback) keeps its status. The ids
# also as `id = ANY(...)`, which the primary key serves: with the join alone, a planner that thought the table
# small (a queue just planned) hashed the batch and read every delivery to find it (3 ms a batch at 12,000
# rows, ten times that at 120,000; docs/scale.md).
_ACCEPT_PG = text(
    "UPDATE deliveries SET"
    " status = CASE WHEN deliveries.status = :sending THEN :accepted ELSE deliveries.status END,"
    " lease_until = CASE WHEN deliveries.status = :sending THEN NULL ELSE deliveries.lease_until END,"
    " provider_message_id = v.sid, sent_at = :now, updated_at = :now, error_code = NULL, error_message = NULL"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:sids AS varchar[])) AS v(id, sid)"
    " WHERE deliveries.id = v.id AND deliveries.id = ANY(CAST(:ids AS integer[]))"
).bindparams(bindparam("now", type_=Delivery.__table__.c.sent_at.type))


def _record_accepted(session, accepted: list[tuple[int, str | None]], now) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_ACCEPT_PG, {"sending": SENDING, "accepted": ACCEPTED, "now": now,
                                     "ids": [d for d, _ in accepted], "sids": [sid for _, sid in accepted]})
        return
    session.connection().execute(_ACCEPT, [{"delivery_id": d, "provider_message_id": sid, "now": now}
                                           for d, sid in accepted])


# Status callbacks stored before we recorded their sid (their dedupe key is "<sid>:<status>"). On PostgreSQL
# one statement with the patterns as one array parameter (`LIKE ANY`), compiled once: building an OR of a
# LIKE per sid cost ~4 ms of CPU per batch of 100 (issue 18). Elsewhere (SQLite, the tests) that OR.
_RACED_PG = select(InboundEvent.id).where(
    InboundEvent.kind == "status", InboundEvent.processed_at.is_(None),
    InboundEvent.dedupe_key.like(any_(bindparam("patterns", type_=postgresql.ARRAY(String)))))


def _raced_statuses(session, sids: list[str]) -> list[int]:
    patterns = [f"{sid}:%" for sid in sids]
    if session.get_bind().dialect.name == "postgresql":
        return list(session.scalars(_RACED_PG, {"patterns": patterns}))
    return list(session.scalars(select(InboundEvent.id).where(
        InboundEvent.kind == "status", InboundEvent.processed_at.is_(None),
        or_(*[InboundEvent.dedupe_key.like(pattern) for pattern in patterns]))))


def send_batch(services, delivery_ids: Sequence[int]) -> BatchReport:
    """Send the deliveries of one bulk task; see the module docstring."""
    settings = services.settings
    report = BatchReport()
    fallbacks: list[int] = []  # issue 19: WhatsApp outside its window, sent on other channels
    with transaction(services.sessions) as session:
        messages, attempts = _prepare(session, settings, delivery_ids, report, fallbacks)
    dispatch_deliveries(services, fallbacks)
    if not messages:
        return report

    if settings.send_async:  # issue 18: from the process's event loop (relay/outbound/async_batch.py)
        results = async_batch.send_all(services, messages, attempts)
    else:
        pool = _POOL.get(settings.send_concurrency)
        results = list(pool.map(lambda m: _send_one(services, m, attempts[m.delivery_id]), messages))

    accepted = [(m, r) for m, r, e, _ in results if r is not None]
    if accepted:
        now = utcnow()
        with transaction(services.sessions) as session:
            _record_accepted(session, [(m.delivery_id, r.provider_message_id) for m, r in accepted], now)
            sids = [r.provider_message_id for m, r in accepted if m.channel != "email"]  # Twilio: SMS, WhatsApp
            pending = _raced_statuses(session, sids) if sids else []
        for message, _ in accepted:
            report.add(SendOutcome(message.delivery_id, "sent"))
        for event_id in pending:  # callbacks that raced ahead of our record of the sid
            dispatch_safely(services.dispatcher.apply_status, event_id)
    failed_ids = []
    for message, _, error, recorded in results:
        if error is not None:  # rare: handled one by one, exactly as send_delivery does
            outcome = recorded or record_failure(services, message.delivery_id, attempts[message.delivery_id], error)
            report.add(outcome)
            if outcome.result in ("failed", "retry"):
                failed_ids.append(message.delivery_id)
    if failed_ids:  # an error burst pauses the notice instead of burning through the list (relay/outbound/bursts.py)
        with services.sessions() as session:
            notice_ids = {n.id for n in (notice_of(session, session.get(Delivery, d)) for d in failed_ids) if n}
        for notice_id in sorted(notice_ids):
            check_burst(services, notice_id)
    return report
