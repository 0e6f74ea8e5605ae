"""Digests: one message per subscriber per period (a local day, or an ISO week delivered on Monday) at
the subscriber's local delivery hour in their IANA zone, grouped by case: new cases, guideline
changes, cases with new discussion (post count and the latest posts shortened), and notices that
expired before quiet hours let them through — each linking to the library.

Beat runs `run_digests` every 15 minutes. A subscriber is due when their period's local delivery
time has come and that period has no digest yet. Exactly once: the digest row (UNIQUE on subscription
and period) and its delivery are written in one transaction with INSERT ... ON CONFLICT DO NOTHING,
so a retried task or a second beat process finds the row and does nothing. An empty digest is still
recorded (items = 0), so nothing is sent and the next one starts where it ended.

At scale (`make bench`: 20,000 subscribers due at once) the due subscribers are built 500 per
transaction (`build_digests`: a few queries per chunk, each distinct content rendered once per
language with placeholders for the subscriber's own links), each chunk's deliveries are queued as
bulk batches as soon as it commits, and relay/outbound/bulk.py composes each distinct digest email once.
`build_digest` (one subscriber) is the reference it must match, and the fallback for a failed chunk."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from relay.infra.db import transaction
from relay.infra.signing import signed_id, unsubscribe_token
from relay.infra.storage import insert_if_new
from relay.library.cases import published_condition
from relay.members.ladder import muted_case_ids, zone
from relay.model.delivery_states import FAILED, QUEUED
from relay.model.notice_refs import notice_of
from relay.model.tables import (
    Case,
    CaseMute,
    Delivery,
    Digest,
    DigestSubscription,
    Member,
    Notice,
    Post,
    Thread,
    utcnow,
)
from relay.outbound import fanout
from relay.outbound.deliveries import move
from relay.outbound.queueing import batch_size, dispatch_batches
from relay.render import i18n
from relay.render.digest_mail import digest_unsubscribe_url
from relay.render.mail import preferences_url, render_mail_template
from relay.render.texts import fit_sms, render_sms

log = logging.getLogger(__name__)

LATEST_POSTS = 3
SHORT = 160


def due_period(sub: DigestSubscription, now: datetime) -> tuple[str, datetime] | None:
    """(period key, its delivery time in UTC) when the subscriber's current period is due, else None.
    Daily: the local date at `hour`. Weekly: the ISO week, on its Monday at `hour`. A period whose
    delivery time came before the subscription was confirmed waits for the next one."""
    tz = zone(sub.timezone)
    local = now.astimezone(tz)
    day = local.date() if sub.frequency == "daily" else local.date() - timedelta(days=local.weekday())
    moment = datetime.combine(day, time(sub.hour), tzinfo=tz).astimezone(now.tzinfo)
    if now < moment or (sub.confirmed_at is not None and sub.confirmed_at > moment):
        return None
    if sub.frequency == "daily":
        return day.isoformat(), moment
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}", moment


@dataclass
class Discussion:
    code: str
    title: str
    url: str
    count: int
    latest: list[tuple[str, str]]  # (author, shortened text), newest last


@dataclass
class Content:
    new_cases: list[tuple[str, str, str]] = field(default_factory=list)  # (code, title, url)
    guidelines: list[tuple[str, str]] = field(default_factory=list)  # (title, url)
    discussions: list[Discussion] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)  # (title, url)

    @property
    def items(self) -> int:
        return len(self.new_cases) + len(self.guidelines) + len(self.discussions) + len(self.missed)


def _short(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= SHORT else line[:SHORT - 1].rstrip() + "…"


@dataclass
class _Feed:
    """What is new in a window for members, or for the public, before a member's own mutes and missed
    notices: each item with the id of its case (None: no case)."""
    new_cases: list[tuple[int, tuple[str, str, str]]] = field(default_factory=list)
    guidelines: list[tuple[int | None, tuple[str, str]]] = field(default_factory=list)
    discussions: list[tuple[int, Discussion]] = field(default_factory=list)

    @property
    def case_ids(self) -> set[int]:
        return {c for c, _ in self.new_cases} | {c for c, _ in self.guidelines if c is not None} | {
            c for c, _ in self.discussions}


def _feed(session: Session, settings, start: datetime, end: datetime, members: bool) -> _Feed:
    """New in [start, end): cases published, guideline changes sent, posts by case. Members see
    members-only cases, others only public ones."""
    feed = _Feed()
    visible = [published_condition()]
    if not members:
        visible.append(Case.visibility == "public")
    published = func.coalesce(Case.published_at, Case.created_at)
    for case in session.scalars(select(Case).where(*visible, published >= start, published < end)
                                .order_by(Case.number)):
        feed.new_cases.append((case.id, (case.code, case.title, settings.case_url(case.code))))
    for notice in session.scalars(select(Notice).where(Notice.kind == "guideline", Notice.status == "sent",
                                                       Notice.sent_at >= start, Notice.sent_at < end)
                                  .order_by(Notice.sent_at, Notice.id)):
        about = session.get(Case, notice.case_id) if notice.case_id else None
        if about is not None and not members and about.visibility != "public":
            continue
        feed.guidelines.append((about.id if about is not None else None,
                                (notice.title, settings.case_url(about.code) if about else settings.library_url)))
    posts = session.execute(
        select(Post, Case).join(Thread, Thread.id == Post.thread_id).join(Case, Case.id == Thread.case_id)
        .where(*visible, Post.kind == "reply", Post.created_at >= start, Post.created_at < end)
        .order_by(Case.number, Post.id)).all()
    by_case: dict[int, Discussion] = {}
    for post, case in posts:
        found = by_case.setdefault(case.id, Discussion(case.code, case.title, settings.case_url(case.code), 0, []))
        found.count += 1
        writer = session.get(Member, post.author_id) if post.author_id else None
        author = writer.short_name if writer is not None else settings.network_name
        found.latest = (found.latest + [(author, _short(post.body))])[-LATEST_POSTS:]
    feed.discussions = list(by_case.items())
    return feed


def _missed(session: Session, settings, member_id: int, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """Notices that expired in [start, end) while quiet hours held them back from the member."""
    missed: list[tuple[str, str]] = []
    for delivery in session.scalars(select(Delivery).where(
            Delivery.member_id == member_id, Delivery.error_code == "expired",
            Delivery.updated_at >= start, Delivery.updated_at < end).order_by(Delivery.id)):
        notice = notice_of(session, delivery)
        if notice is not None and notice.title not in {t for t, _ in missed}:
            case = session.get(Case, notice.case_id) if notice.case_id else None
            missed.append((notice.title, settings.case_url(case.code) if case else settings.library_url))
    return missed


def _content(feed: _Feed, muted, missed) -> Content:
    """One subscriber's content: the feed less their muted cases, plus their missed notices."""
    return Content(new_cases=[item for case_id, item in feed.new_cases if case_id not in muted],
                   guidelines=[item for case_id, item in feed.guidelines if case_id is None or case_id not in muted],
                   discussions=[d for case_id, d in feed.discussions if case_id not in muted],
                   missed=list(missed))


def build_content(session: Session, settings, sub: DigestSubscription, start: datetime, end: datetime) -> Content:
    """What is new in [start, end) for this subscriber: members see members-only cases, others only
    public ones; a member's muted cases are left out."""
    member = session.get(Member, sub.member_id) if sub.member_id else None
    muted = muted_case_ids(session, member.id, sub.channel) if member else set()
    missed = _missed(session, settings, member.id, start, end) if member is not None else []
    return _content(_feed(session, settings, start, end, member is not None), muted, missed)


def render(settings, sub: DigestSubscription, content: Content, period: str, language: str,
           unsubscribe_url: str, preferences_url: str | None) -> tuple[str, str, str]:
    """Subject, text part and HTML part (the SMS digest is one text: see sms_text)."""
    label = (i18n.translate(language, "weekly digest") if sub.frequency == "weekly"
             else i18n.translate(language, "digest"))
    posts = sum(d.count for d in content.discussions)
    subject = f"{settings.network_name} {label} {period}: " + ", ".join(
        part for part in (
            i18n.translate_plural(language, "%(num)d new case", "%(num)d new cases", len(content.new_cases))
            if content.new_cases else "",
            i18n.translate_plural(language, "%(num)d new post", "%(num)d new posts", posts) if content.discussions else "",
            i18n.translate_plural(language, "%(num)d guideline change", "%(num)d guideline changes", len(content.guidelines))
            if content.guidelines else "",
            i18n.translate_plural(language, "%(num)d missed notice", "%(num)d missed notices", len(content.missed))
            if content.missed else "",
        ) if part)
    context = dict(network=settings.network_name, period=period, content=content, library=settings.library_url,
                   unsubscribe_url=unsubscribe_url, preferences_url=preferences_url, label=label)
    return (subject, render_mail_template(settings.templates_dir, "digest.txt", language, **context),
            render_mail_template(settings.templates_dir, "digest.html", language, **context))


def sms_text(settings, content: Content, language: str) -> str:
    posts = sum(d.count for d in content.discussions)
    text = render_sms(settings.templates_dir, "digest", language, network=settings.network_name,
                      new_cases=len(content.new_cases), posts=posts, cases=len(content.discussions),
                      guidelines=len(content.guidelines), missed=len(content.missed),
                      codes=" ".join(c for c, _, _ in content.new_cases[:5]), library=settings.library_url)
    return fit_sms(text, settings.library_url, limit=160 if text.isascii() else 70, language=language)


@dataclass(frozen=True)
class DigestRun:
    due: int
    built: int
    sent: int
    delivery_ids: tuple[int, ...] = ()


def _reachable(member: Member | None, channel: str) -> bool:
    if member is None:
        return True
    if channel == "sms":
        return member.active and member.sms_opted_out_at is None
    return member.active and member.email_opted_out_at is None and member.email_suspended_at is None


def build_digest(services, subscription_id: int, period: str, now: datetime) -> list[int]:
    """Build and plan one subscriber's digest for the period, exactly once; the delivery ids planned."""
    settings = services.settings
    with transaction(services.sessions) as session:
        sub = session.get(DigestSubscription, subscription_id)
        if sub is None or sub.status != "active":
            return []
        start = session.scalar(select(func.max(Digest.window_end)).where(Digest.subscription_id == sub.id))
        start = start or sub.confirmed_at or sub.created_at
        content = build_content(session, settings, sub, start, now)
        member = session.get(Member, sub.member_id) if sub.member_id else None
        language = member.language if member else "en"
        subject = text = html = ""
        if content.items:
            if sub.channel == "sms":
                text = sms_text(settings, content, language)
            else:
                subject, text, html = render(settings, sub, content, period, language,
                                             digest_unsubscribe_url(settings, sub.id),
                                             preferences_url(settings, member.id) if member else None)
        digest_id = insert_if_new(session, Digest.__table__, {
            "subscription_id": sub.id, "period": period, "window_start": start, "window_end": now,
            "items": content.items, "subject": subject[:300], "text": text, "html": html, "created_at": now})
        if digest_id is None:  # another beat process or a retried task built it
            return []
        if not content.items or not _reachable(member, sub.channel):
            return []
        return fanout.plan(session, [{
            "dedupe_key": f"digest:{digest_id}", "purpose": "digest", "channel": sub.channel,
            "member_id": sub.member_id, "to_address": sub.address, "body": text, "created_at": now}])


def drop_expired_waiting(session: Session, now: datetime) -> int:
    """Notice deliveries held back (quiet hours, or a retry) whose notice has expired are dropped now —
    failed with error code "expired", stamped at the expiry — so the next digest lists them as missed."""
    dropped = 0
    waiting = session.scalars(select(Delivery).where(Delivery.status == QUEUED, Delivery.purpose == "notice",
                                                     Delivery.next_attempt_at.is_not(None))
                              .order_by(Delivery.id).with_for_update(skip_locked=True))
    for delivery in waiting:
        notice = notice_of(session, delivery)
        if notice is not None and notice.expires_at is not None and notice.expires_at <= now:
            move(session, delivery, FAILED, error_code="expired", updated_at=notice.expires_at,
                 error_message=f"notice {notice.id} expired at {notice.expires_at.isoformat()} during quiet hours")
            dropped += 1
    return dropped


CHUNK = 500  # subscribers built per transaction: their digests and deliveries committed together
# Placeholders for a subscriber's own links, rendered once per group and replaced per subscriber:
# ASCII words that neither template escaping nor the URLs around them change.
_TOKEN = "relaydigesttokenzq"
_PREFS = "relaydigestpreferenceszq"


def build_digests(services, due: list[tuple[int, str]], now: datetime) -> list[int]:
    """build_digest for many subscribers in one transaction, set-wise: their subscriptions, members,
    last windows and mutes in a few queries; the feed of each distinct (window start, members or
    public) read once; each distinct content rendered once per language with placeholders for the
    subscriber's own links; the digests written by one INSERT ... ON CONFLICT DO NOTHING RETURNING and
    their deliveries by one more. Exactly what build_digest writes, subscriber by subscriber (a digest
    another beat process or a retried task built first is skipped, and nothing is planned for it).
    Returns the delivery ids planned."""
    settings = services.settings
    secret = settings.secret()
    periods = dict(due)
    with transaction(services.sessions) as session:
        rows = session.execute(select(DigestSubscription, Member)
                               .outerjoin(Member, Member.id == DigestSubscription.member_id)
                               .where(DigestSubscription.id.in_(list(periods)), DigestSubscription.status == "active")
                               .order_by(DigestSubscription.id)).all()
        if not rows:
            return []
        last = dict(session.execute(select(Digest.subscription_id, func.max(Digest.window_end))
                                    .where(Digest.subscription_id.in_([sub.id for sub, _ in rows]))
                                    .group_by(Digest.subscription_id)).all())
        starts = {sub.id: last.get(sub.id) or sub.confirmed_at or sub.created_at for sub, _ in rows}
        member_ids = sorted({member.id for _, member in rows if member is not None})
        mutes: dict[tuple[int, str], set[int]] = {}
        with_missed: set[int] = set()
        if member_ids:
            for member_id, case_id, channel in session.execute(
                    select(CaseMute.member_id, CaseMute.case_id, CaseMute.channel)
                    .where(CaseMute.member_id.in_(member_ids))):
                mutes.setdefault((member_id, channel), set()).add(case_id)
            with_missed = set(session.scalars(select(Delivery.member_id).distinct().where(
                Delivery.member_id.in_(member_ids), Delivery.error_code == "expired",
                Delivery.updated_at >= min(starts.values()), Delivery.updated_at < now)))
        feeds: dict[tuple, tuple[_Feed, set[int]]] = {}
        contents: dict[tuple, Content] = {}
        rendered: dict[tuple, tuple[str, str, str]] = {}
        values, subs = [], {}
        for sub, member in rows:
            start = starts[sub.id]
            feed_key = (start, member is not None)
            if feed_key not in feeds:
                feed = _feed(session, settings, start, now, member is not None)
                feeds[feed_key] = (feed, feed.case_ids)
            feed, case_ids = feeds[feed_key]
            muted = frozenset(mutes.get((member.id, sub.channel), set()) & case_ids) if member else frozenset()
            missed = tuple(_missed(session, settings, member.id, start, now)) if member and member.id in with_missed \
                else ()
            content_key = (feed_key, muted, missed)
            if content_key not in contents:
                contents[content_key] = _content(feed, muted, missed)
            content = contents[content_key]
            language = member.language if member else "en"
            period = periods[sub.id]
            subject = text = html = ""
            if content.items:
                render_key = (content_key, sub.channel, language, sub.frequency, period, member is not None)
                if render_key not in rendered:
                    if sub.channel == "sms":
                        rendered[render_key] = ("", sms_text(settings, content, language), "")
                    else:
                        base = settings.public_base_url
                        rendered[render_key] = render(settings, sub, content, period, language,
                                                      f"{base}/unsubscribe/{_TOKEN}",
                                                      f"{base}/preferences/{_PREFS}" if member else None)
                subject, text, html = rendered[render_key]
                if sub.channel != "sms":
                    token = unsubscribe_token(secret, sub.id, "digest")
                    prefs = signed_id(secret, "preferences", member.id) if member else ""
                    text = text.replace(_TOKEN, token).replace(_PREFS, prefs)
                    html = html.replace(_TOKEN, token).replace(_PREFS, prefs)
            subs[sub.id] = (sub, member, content.items, text)
            values.append({"subscription_id": sub.id, "period": period, "window_start": start, "window_end": now,
                           "items": content.items, "subject": subject[:300], "text": text, "html": html,
                           "created_at": now})
        module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        table = Digest.__table__
        # In subscription order, as every beat process does: two of them at once wait on each other's
        # rows in the same order, never in a cycle.
        new = session.execute(module.insert(table).on_conflict_do_nothing()
                              .returning(table.c.id, table.c.subscription_id), values).all()
        planned = []
        for digest_id, subscription_id in sorted(new, key=lambda row: row[1]):
            sub, member, items, text = subs[subscription_id]
            if items and _reachable(member, sub.channel):
                planned.append({"dedupe_key": f"digest:{digest_id}", "purpose": "digest", "channel": sub.channel,
                                "member_id": sub.member_id, "to_address": sub.address, "body": text,
                                "created_at": now})
        return fanout.plan(session, planned) if planned else []


def _dispatch(services, delivery_ids: list[int]) -> None:
    """Queue digest deliveries as bulk tasks (a run is a broadcast: it must not hold up relayed replies
    on the outbound queue), stamped as dispatched once queued; what could not be queued is left to the
    sweeper."""
    if not delivery_ids:
        return
    size = batch_size(services)
    batches = [delivery_ids[i:i + size] for i in range(0, len(delivery_ids), size)]
    queued = [d for batch in batches[:dispatch_batches(services, batches)] for d in batch]
    if queued:
        with transaction(services.sessions) as session:
            for start in range(0, len(queued), 500):
                session.execute(update(Delivery).where(Delivery.id.in_(queued[start:start + 500]))
                                .values(dispatched_at=utcnow()).execution_options(synchronize_session=False))


def run_digests(services, now: datetime | None = None) -> DigestRun:
    """Every active subscriber whose period is due and has no digest yet gets one (beat, every 15 min).
    Built CHUNK subscribers at a time (build_digests), each chunk's deliveries queued as soon as it is
    committed; a chunk that fails is built again subscriber by subscriber, so one broken subscriber
    does not hold back the others (the next run retries it)."""
    now = now or utcnow()
    with transaction(services.sessions) as session:
        dropped = drop_expired_waiting(session, now)
    if dropped:
        log.info("digests: %s waiting notice deliveries expired during quiet hours", dropped)
    with services.sessions() as session:
        subs = session.execute(select(DigestSubscription.id, DigestSubscription.timezone,
                                      DigestSubscription.frequency, DigestSubscription.hour,
                                      DigestSubscription.confirmed_at)
                               .where(DigestSubscription.status == "active").order_by(DigestSubscription.id)).all()
        due = [(sub.id, found[0]) for sub in subs if (found := due_period(sub, now)) is not None]
        done: set[tuple[int, str]] = set()
        for start in range(0, len(due), 500):
            chunk = due[start:start + 500]
            done.update(session.execute(select(Digest.subscription_id, Digest.period).where(
                Digest.subscription_id.in_([s for s, _ in chunk]),
                Digest.period.in_({p for _, p in chunk}))).all())
    todo = [(s, p) for s, p in due if (s, p) not in done]
    ids: list[int] = []
    built = 0
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        try:
            planned = build_digests(services, chunk, now)
            built += len(chunk)
        except Exception:
            log.exception("digests for %s subscriptions from %s failed; building them one by one", len(chunk),
                          chunk[0][0])
            planned = []
            for subscription_id, period in chunk:
                try:
                    planned.extend(build_digest(services, subscription_id, period, now))
                except Exception:  # one broken subscriber must not hold back the others; the next run retries it
                    log.exception("digest for subscription %s (%s) failed", subscription_id, period)
                    continue
                built += 1
        _dispatch(services, planned)
        ids.extend(planned)
    if todo:
        log.info("digests: %s due, %s built, %s sent", len(todo), built, len(ids))
    return DigestRun(len(todo), built, len(ids), tuple(ids))
