"""Notices: a new case, a guideline, an announcement, or a correction of an earlier notice, each with
a severity, an expiry, target lists and channels. A notice starts as a draft, is sent at once or
scheduled, and fans out like every broadcast: each person once across lists, on the channels they
chose and can take, one delivery per member x channel (relay/notices/audience.py). A notice about a case
is also a post in the case discussion, and its recipients follow the case.

Sending claims the notice with one atomic UPDATE (draft/scheduled -> sending) in the transaction
that plans its deliveries, so two senders (a double click, two beat ticks) send it once. Urgent
notices keep severity "urgent" on the notice, found from any delivery by notice_refs.notice_of."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from relay.access import permissions
from relay.discussion.threads import ensure_thread
from relay.guard.confirmation import IdentifiersFound, require_confirmation
from relay.infra import audit
from relay.infra.db import transaction
from relay.infra.settings import SettingsError, parse_duration
from relay.library.cases import get_case, is_published
from relay.members import ladder
from relay.model.delivery_states import FAILED, HELD, QUEUED
from relay.model.notice_refs import PREFIX as NOTICE_KEY_PREFIX
from relay.model.notice_refs import deliveries_filter, delivery_key
from relay.model.tables import LANGUAGES, Case, Delivery, Member, MemberList, Membership, Notice, Post, utcnow
from relay.model.translatable import N_, Translatable
from relay.notices.audience import (
    CHANNELS,
    audience,
    channels_of,
    list_names,
    post_body,
    sms_text,
    wave_of,
)
from relay.outbound import fanout
from relay.outbound.queueing import batch_size as bulk_batch_size
from relay.outbound.queueing import dispatch_batches, dispatch_deliveries

log = logging.getLogger(__name__)

KINDS = ("new_case", "guideline", "announcement", "correction")
SEVERITIES = ("routine", "urgent")


class UnknownList(Translatable, LookupError):
    """A target list that does not exist."""


class NoticeNotFound(Translatable, LookupError):
    """No notice by that id."""


class NoticeError(Translatable, ValueError):
    """A notice that cannot be made or sent as asked; the message says why, in the reader's language
    (relay/model/translatable.py)."""


class NoticeStateError(NoticeError):
    """The notice is not in a state that allows this (already sent, not yet sent, ...)."""


class NoticeExpired(NoticeStateError):
    pass


@dataclass(frozen=True)
class NoticeResult:
    notice_id: int
    recipients: int  # members reached on at least one channel
    delivery_ids: tuple[int, ...]
    sms: int = 0
    emails: int = 0
    whatsapp: int = 0  # issue 19


def parse_channels(value) -> str:
    """'sms;email', 'sms,email' or ['sms', 'email'] -> 'sms;email'; anything else is refused."""
    parts = value if isinstance(value, (list, tuple)) else re.split(r"[;,\s]+", str(value or ""))
    chosen = {str(p).strip().lower() for p in parts if str(p).strip()}
    unknown = sorted(chosen - set(CHANNELS))
    if unknown or not chosen:
        raise NoticeError(N_("channels must be any of %(channels)s, separated by ';' (sms;email), got %(value)s"),
                          channels=", ".join(CHANNELS), value=repr(value))
    return ";".join(c for c in CHANNELS if c in chosen)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time ('2026-12-01T07:00+09:00'); without an offset it is UTC."""
    try:
        when = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise NoticeError(N_("expected an ISO 8601 time like 2026-12-01T07:00:00+09:00, got %(value)s"), value=repr(text)) from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """An expiry given as a duration from now ('6h', '2d') or as an ISO 8601 time."""
    try:
        return (now or utcnow()) + parse_duration(text, "expiry")
    except SettingsError:
        pass
    try:
        return parse_time(text)
    except NoticeError:
        raise NoticeError(N_("expiry: expected a duration from now (30m, 6h, 2d: a number with s, m, h or d) or an "
                             "ISO 8601 time like 2026-12-01T07:00:00+09:00, got %(value)s"), value=repr(text)) from None


def parse_window(text: str | None, what: str = "the acknowledgement window") -> timedelta | None:
    """'30m', '2h' -> a timedelta; empty -> None; anything else is refused (issue 17: --ack-within)."""
    if text is None or not str(text).strip():
        return None
    try:
        return parse_duration(str(text).strip().lower(), what)
    except SettingsError:
        if what == "the escalation step":
            raise NoticeError(N_("the escalation step must be a duration like 30m or 2h, got %(value)s"),
                              value=repr(text)) from None
        raise NoticeError(N_("the acknowledgement window must be a duration like 30m or 2h, got %(value)s"),
                          value=repr(text)) from None


def get_notice(session: Session, notice_id: int) -> Notice:
    """The notice with this id, or NoticeNotFound."""
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NoticeNotFound(N_("no notice %(id)s"), id=notice_id)
    return notice


def _one_line(text: str, what: str, limit: int = 300) -> str:
    line = " ".join((text or "").split())
    if len(line) > limit:
        raise NoticeError(N_("the title is longer than %(max)d characters"), max=limit)
    return line


def _lists(session: Session, names) -> str:
    names = sorted({n.strip() for n in names if n and n.strip()})
    if not names:
        raise NoticeError(N_("a notice needs at least one target list"))
    found = set(session.scalars(select(MemberList.name).where(MemberList.name.in_(names))))
    missing = [n for n in names if n not in found]
    if missing:
        raise UnknownList(N_("no list named %(names)s"), names=", ".join(missing))
    return ";".join(names)


def create_notice(session: Session, *, kind: str, title: str = "", body: str = "", lists=(),
                  case_code: str | None = None, severity: str | None = None, channels=None,
                  expires_at: datetime | None = None, corrects_notice_id: int | None = None,
                  created_by: int | None = None, now: datetime | None = None,
                  ack_within: timedelta | None = None, escalation_step: timedelta | None = None) -> Notice:
    """Validate and store a draft notice (nothing is sent). `ack_within` asks recipients to acknowledge it
    within that window, after which it escalates every `escalation_step` (issue 17)."""
    now = now or utcnow()
    if kind not in KINDS:
        raise NoticeError(N_("kind must be one of %(kinds)s, got %(value)s"), kinds=", ".join(KINDS), value=repr(kind))
    if severity is not None and severity not in SEVERITIES:
        raise NoticeError(N_("severity must be routine or urgent, got %(value)s"), value=repr(severity))
    if expires_at is not None and expires_at <= now:
        raise NoticeError(N_("the expiry is already past"))
    if created_by is not None and session.get(Member, created_by) is None:
        raise NoticeError(N_("no member %(id)s to be the author"), id=created_by)
    for window, what in ((ack_within, N_("the acknowledgement window must be more than 0 and at most 7 days")),
                         (escalation_step, N_("the escalation step must be more than 0 and at most 7 days"))):
        if window is not None and not timedelta(0) < window <= timedelta(days=7):
            raise NoticeError(what)
    if escalation_step is not None and ack_within is None:
        raise NoticeError(N_("an escalation step needs an acknowledgement window (ack within)"))
    title, body = _one_line(title, "the title"), (body or "").strip()
    notice = Notice(ack_within_s=int(ack_within.total_seconds()) if ack_within else None,
                    escalation_step_s=int(escalation_step.total_seconds()) if escalation_step else None,
                    kind=kind, title=title, body=body, severity=severity or "routine", status="draft",
                    expires_at=expires_at, created_by=created_by, created_at=now)
    if kind == "correction":
        if corrects_notice_id is None:
            raise NoticeError(N_("a correction needs the notice it corrects"))
        if lists or case_code:
            raise NoticeError(N_("a correction goes to exactly the original's recipients: give no lists or case"))
        original = get_notice(session, corrects_notice_id)
        if original.status not in ("sent", "stopped"):  # a stopped notice went out: it can be corrected
            raise not_sent_yet(original)
        if not body:
            raise NoticeError(N_("a correction needs its text"))
        case = session.get(Case, original.case_id) if original.case_id else None
        notice.title = title or original.title or (case.title if case is not None else "")
        notice.lists, notice.channels, notice.case_id = original.lists, original.channels, original.case_id
        notice.corrects_notice_id, notice.severity = original.id, severity or original.severity
    else:
        if corrects_notice_id is not None:
            raise NoticeError(N_("only a correction corrects another notice"))
        case = get_case(session, case_code) if case_code else None
        if case is None and kind == "new_case":
            raise NoticeError(N_("a new-case notice needs its case"))
        if case is not None and not is_published(case):
            raise unpublished(case)
        notice.title = title or (case.title if case is not None and kind == "new_case" else "")
        if not notice.title:
            raise NoticeError(N_("a notice needs a title"))
        notice.case_id = case.id if case is not None else None
        notice.lists = _lists(session, lists)
        notice.channels = parse_channels(channels) if channels else ";".join(CHANNELS)
    session.add(notice)
    session.flush()
    return notice


def schedule_notice(session: Session, notice_id: int, when: datetime, now: datetime | None = None,
                    confirm_identifiers: bool = False,
                    actor: audit.Actor = audit.SYSTEM) -> Notice:
    """Schedule a draft (or move a scheduled notice) to go out at `when` (sent by relay.send_scheduled)."""
    now = now or utcnow()
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
    notice = get_notice(session, notice_id)
    if notice.status not in ("draft", "scheduled"):
        raise NoticeStateError(N_("notice %(id)s is %(status)s: only a draft can be scheduled"), id=notice.id, status=notice.status)
    if when <= now:
        raise NoticeError(N_("%(when)s is in the past: send the notice now instead"), when=when.isoformat())
    if notice.expires_at is not None and when >= notice.expires_at:
        raise NoticeError(N_("notice %(id)s expires at %(when)s, before it would be sent"), id=notice.id,
                          when=notice.expires_at.isoformat())
    case = session.get(Case, notice.case_id) if notice.case_id else None
    confirmed = require_confirmation(notice_fields(notice, case), confirm_identifiers)  # issue 16
    if confirmed:
        audit.record(session, "guard.confirm", f"notice:{notice.id}", actor,
                     kinds=",".join(sorted({f["kind"] for f in confirmed})))
    notice.status, notice.scheduled_for = "scheduled", when
    audit.record(session, "notice.schedule", f"notice:{notice.id}", actor, at=when.isoformat())
    return notice


def unpublished(case: Case) -> NoticeError:
    """A notice about a case the library does not show yet is refused."""
    if case.status == "draft":
        return NoticeError(N_("%(code)s is a draft: publish it before sending a notice"), code=case.code)
    return NoticeError(N_("%(code)s is not published: publish it before sending a notice"), code=case.code)


def not_sent_yet(notice: Notice) -> NoticeStateError:
    """Why a notice that has not gone out cannot be corrected, and what to do (notices are not edited:
    one that is wrong is cancelled and created again)."""
    if notice.status in ("draft", "scheduled"):
        return NoticeStateError(N_("notice %(id)s is %(status)s, not sent: there is nothing to correct. A notice "
                                   "cannot be edited: cancel it (relay notice cancel %(id)s, the console's Cancel "
                                   "button or POST /api/v1/notices/%(id)s/cancel) and create a new one"),
                                id=notice.id, status=notice.status)
    if notice.status == "cancelled":
        return NoticeStateError(N_("notice %(id)s was cancelled before it went out: there is nothing to correct"),
                                id=notice.id)
    return NoticeStateError(N_("notice %(id)s is %(status)s, not sent yet: correct it once it is sent"),
                            id=notice.id, status=notice.status)


def cancel_notice(session: Session, notice_id: int, actor: audit.Actor = audit.SYSTEM) -> Notice:
    """Withdraw a draft or scheduled notice before it goes out. A notice already sending or sent cannot be
    called back (messages are with the providers): send a correction instead."""
    cancelled = session.execute(update(Notice).where(Notice.id == notice_id, Notice.status.in_(("draft", "scheduled")))  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                                .values(status="cancelled").execution_options(synchronize_session=False)).rowcount
    notice = get_notice(session, notice_id)
    if not cancelled:
        if notice.status in ("sending", "sent"):  # (stop_notice stops what still waits of a sent one)
            raise NoticeStateError(N_("notice %(id)s is %(status)s: only a draft or scheduled notice can be "
                                      "cancelled — send a correction instead"), id=notice.id, status=notice.status)
        raise NoticeStateError(N_("notice %(id)s is %(status)s: only a draft or scheduled notice can be cancelled"),
                               id=notice.id, status=notice.status)
    audit.record(session, "notice.cancel", f"notice:{notice.id}", actor)
    return notice


STOPPABLE = ("sent", "paused")
CANCELLED_CODE = "cancelled"  # the error code of a delivery a stop cancelled before it went out


@dataclass(frozen=True)
class StopResult:
    notice_id: int
    title: str
    cancelled: int  # deliveries still waiting (the notice's, its escalation's calls and report) now cancelled


def stop_notice(session: Session, notice_id: int, *, roles, actor: audit.Actor,
                now: datetime | None = None) -> StopResult:
    """Stop a sent (or paused) notice for good: its escalation takes no further step (no other channel, no
    call, no report), and every delivery of it still waiting (queued or held: the notice itself, the
    escalation's channels, calls and report) is cancelled (`failed`, code `cancelled`). What already went
    out stays as it is; acknowledgements already given are kept. For a coordinator or an admin (`roles`
    must allow notice.stop: checked here, for every shell); audited `notice.stop`.

    The status moves sent -> stopped by one conditional UPDATE, which takes the notice's row lock: the
    escalation (relay/notices/escalation.py) takes the same lock (SELECT ... FOR UPDATE) and checks the
    status in the transaction that claims its steps, so a sweep either finished before the stop (and the
    deliveries it planned are cancelled here) or sees the notice stopped and does nothing. A call already
    planned is also refused at send time (relay/outbound/call_checks.py: the notice is no longer "sent")."""
    permissions.require(roles, "notice.stop")
    stopped = session.execute(update(Notice).where(Notice.id == notice_id, Notice.status.in_(STOPPABLE))  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                              .values(status="stopped").execution_options(synchronize_session=False)).rowcount
    notice = get_notice(session, notice_id)
    session.refresh(notice)  # as it is now, after the UPDATE
    if not stopped:
        raise _not_stoppable(notice)
    calls, report = f"call:{notice.id}:", f"ack-report:{notice.id}"
    cancelled = session.execute(update(Delivery).where(  # type: ignore[attr-defined]  # DML gives a CursorResult
        or_(deliveries_filter(notice), Delivery.dedupe_key.startswith(calls, autoescape=True),
            Delivery.dedupe_key == report, Delivery.dedupe_key.startswith(report + ":", autoescape=True)),
        Delivery.status.in_((QUEUED, HELD)))
        .values(status=FAILED, error_code=CANCELLED_CODE, lease_until=None, next_attempt_at=None,
                error_message=f"not sent: notice {notice.id} was stopped", updated_at=now or utcnow())
        .execution_options(synchronize_session=False)).rowcount
    audit.record(session, "notice.stop", f"notice:{notice.id}", actor, cancelled=cancelled)
    log.info("notice %s stopped by %s: %s waiting deliveries cancelled", notice.id, actor.label, cancelled)
    return StopResult(notice.id, notice.title, cancelled)


def _not_stoppable(notice: Notice) -> NoticeStateError:
    if notice.status == "stopped":
        return NoticeStateError(N_("notice %(id)s is already stopped"), id=notice.id)
    if notice.status in ("draft", "scheduled"):
        return NoticeStateError(N_("notice %(id)s is %(status)s, not sent: cancel it instead"), id=notice.id,
                                status=notice.status)
    if notice.status == "sending":
        return NoticeStateError(N_("notice %(id)s is still being sent: stop it again in a minute"), id=notice.id)
    return NoticeStateError(N_("notice %(id)s is %(status)s: only a sent notice can be stopped"), id=notice.id,
                            status=notice.status)


def _claim(session: Session, notice_id: int, now: datetime, due_only: bool) -> Notice:
    allowed = ("scheduled",) if due_only else ("draft", "scheduled")
    conditions = [Notice.id == notice_id, Notice.status.in_(allowed),
                  or_(Notice.expires_at.is_(None), Notice.expires_at > now)]
    if due_only:
        conditions.append(Notice.scheduled_for <= now)
    claimed = session.execute(update(Notice).where(*conditions).values(status="sending")  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                              .execution_options(synchronize_session=False)).rowcount == 1
    notice = get_notice(session, notice_id)  # not loaded before the UPDATE, so read as it is now
    if claimed:
        return notice
    if notice.status in allowed and notice.expires_at is not None and notice.expires_at <= now:
        raise NoticeExpired(N_("notice %(id)s expired at %(when)s; it is not sent late"), id=notice.id,
                            when=notice.expires_at.isoformat())
    if notice.status == "cancelled":
        raise NoticeStateError(N_("notice %(id)s was cancelled before it went out: it is never sent; "
                                  "create a new notice instead"), id=notice.id)
    raise NoticeStateError(N_("notice %(id)s is %(status)s, not a draft: it is not sent again"), id=notice.id,
                           status=notice.status)


def notice_post_channel(actor: audit.Actor) -> str:
    """Where a notice's post in its case thread came from: `cli` (relay notice ...), `api`, or `console`
    (the console, and a scheduled notice the beat sends)."""
    return actor.source if actor.source in ("cli", "api") else "console"


FIRST_WAVE = 200  # members planned, committed and queued before the rest: the first messages go out at once
FIRST_WAVE_BATCH = 100  # deliveries per bulk task in the first wave (~240 deliveries: work for three processes)
WAVE_GROWTH = 4  # each later wave is this many times the one before (fewer waves: each costs ~35 ms to plan)
LARGEST_WAVE = 10_000  # ... up to this many members


def notice_fields(notice: Notice, case: Case | None) -> dict[str, str]:
    """The text a notice sends, by field, for the patient-information guard (issue 16)."""
    fields = {"title": notice.title, "body": notice.body}
    if case is not None:
        fields.update({"case title": case.title, "chief complaint": case.chief_complaint,
                       "symptoms": case.symptoms, "exposure history": case.exposure_history,
                       "findings": case.findings})
    return fields


def send_notice(services, notice_id: int, now: datetime | None = None, due_only: bool = False,
                actor: audit.Actor = audit.SYSTEM, confirm_identifiers: bool = False) -> NoticeResult:
    """Claim the notice, plan one delivery per recipient x channel, commit, then dispatch them.

    A broadcast is planned in waves so its first messages leave within a second however big it is:
    the claim, the post and the first FIRST_WAVE members' deliveries are committed and queued, then
    finish_notice() plans the rest in waves four times as large each time, each committed then queued, so the
    workers send one wave while the next is planned (issue 18: with the rest planned in one statement the
    workers sat idle for it, a tenth of a 100,000-member broadcast), and marks the notice sent. A notice
    left "sending" by a crash in between is finished by the sweeper (unfinished_notices): nothing
    doubles, the rows planned already are kept.

    Issue 16: a notice whose text (or its case's) holds a patient identifier is refused with
    IdentifiersFound unless `confirm_identifiers` (audited `guard.confirm`); a scheduled one was checked when
    it was scheduled."""
    settings, now = services.settings, now or utcnow()
    with transaction(services.sessions) as session:
        notice = _claim(session, notice_id, now, due_only)
        case = session.get(Case, notice.case_id) if notice.case_id else None
        if case is not None and not is_published(case):
            raise unpublished(case)
        if not due_only:
            confirmed = require_confirmation(notice_fields(notice, case), confirm_identifiers)
            if confirmed:
                audit.record(session, "guard.confirm", f"notice:{notice.id}", actor,
                             kinds=",".join(sorted({f["kind"] for f in confirmed})))
        if case is not None:
            thread = ensure_thread(session, case)
            post = Post(thread_id=thread.id, kind="notice", channel=notice_post_channel(actor),
                        body=post_body(notice, case))
            session.add(post)
            session.flush()
            notice.post_id = post.id
        notice.sent_at = now
        audit.record(session, "notice.send", f"notice:{notice.id}", actor, kind=notice.kind,
                     lists=notice.lists, channels=notice.channels, severity=notice.severity)
        sms_for = _sms_texts(settings, notice, case)
        if notice.kind == "correction":  # exactly the original's recipients (relay/notices/corrections.py)
            result = _plan_listed(session, notice, audience(session, notice), sms_for, _email_body(session, notice))
            notice.status = "sent"
        else:
            boundary = first_wave_boundary(session, list_names(notice))
            _plan_set_wise(session, notice, sms_for, _email_body(session, notice), before=boundary)
    if notice.kind == "correction":
        dispatch_deliveries(services, list(result.delivery_ids))
        return result
    # the first wave in small batches, so every worker process starts at once on it
    dispatch_notice_batches(services, notice, batch_size=min(FIRST_WAVE_BATCH, bulk_batch_size(services)),
                            before_member=boundary)
    return finish_notice(services, notice_id, after_member=boundary)


def first_wave_boundary(session: Session, lists: list[str]) -> int | None:
    """A member id that ends the first wave (wave_boundary from the start, FIRST_WAVE members)."""
    return wave_boundary(session, lists, 0, FIRST_WAVE)


def wave_boundary(session: Session, lists: list[str], start: int, size: int) -> int | None:
    """A member id that ends the wave of members from `start` on: the smallest of each list's size-th
    member id from there, each read off the memberships' (list, member) index, so it costs the same at
    100,000 members as at 1,000. Between `start` and it every list has fewer than `size` members (the
    wave is at most `size` per list). None: no list has more than `size` members left."""
    list_ids = session.scalars(select(MemberList.id).where(MemberList.name.in_(lists))).all()
    ends = [session.scalar(select(Membership.member_id).where(Membership.list_id == list_id,
                                                              Membership.member_id >= start)
                           .order_by(Membership.member_id).offset(size).limit(1)) for list_id in list_ids]
    found = [end for end in ends if end is not None]
    return min(found) if found else None


def _sms_texts(settings, notice: Notice, case: Case | None):
    texts: dict[str, str] = {}

    def sms_for(language: str) -> str:
        if language not in texts:
            texts[language] = sms_text(settings, notice, case, language)
        return texts[language]

    return sms_for


def _email_body(session: Session, notice: Notice) -> str:
    post = session.get(Post, notice.post_id) if notice.post_id else None
    return post.body if post is not None else notice.body or notice.title


def finish_notice(services, notice_id: int, after_member: int | None = 0) -> NoticeResult:
    """Plan every delivery of a broadcast in "sending" (those planned already are kept as they are),
    make its list members follow the case, mark it sent and queue what is still waiting of members
    from `after_member` on (None: nobody left; 0: everyone). Safe to run twice.

    The members from `after_member` on are planned in waves (send_notice): each wave's members follow
    the case and get their deliveries in one commit, then the wave is queued, then the next is planned."""
    settings = services.settings
    size = FIRST_WAVE
    start = after_member
    texts = None  # the SMS text per language and the email body, made once for all the waves
    while start is not None:
        size = min(size * WAVE_GROWTH, LARGEST_WAVE)
        with transaction(services.sessions) as session:
            notice = get_notice(session, notice_id)
            if texts is None:
                case = session.get(Case, notice.case_id) if notice.case_id else None
                texts = _sms_texts(settings, notice, case), _email_body(session, notice)
            end = wave_boundary(session, list_names(notice), start, size)
            _plan_set_wise(session, notice, *texts, after=start, before=end)
        dispatch_notice_batches(services, notice, after_member=start, before_member=end)
        start = end
    with transaction(services.sessions) as session:
        notice = get_notice(session, notice_id)
        result = _counts(session, notice)
        if notice.status == "sending":
            notice.status = "sent"
    return result


def unfinished_notices(session: Session, older_than: datetime) -> list[int]:
    """Broadcasts left in "sending" (the process sending them died between its waves)."""
    return list(session.scalars(select(Notice.id).where(Notice.status == "sending", Notice.sent_at < older_than)))


def _plan_listed(session: Session, notice: Notice, recipients, sms_for, email_body: str) -> NoticeResult:
    """Plan deliveries for a list of Recipients (a correction's original audience)."""
    rows = fanout.delivery_rows(
        recipients, purpose="notice", post_id=notice.post_id, case_id=notice.case_id, sms_text=sms_for,
        email_body=email_body,
        key=None if notice.post_id else lambda member_id, channel: delivery_key(notice.id, member_id, channel))
    ids = fanout.plan(session, rows)
    return NoticeResult(notice.id, len(recipients), tuple(ids), sms=sum(r["channel"] == "sms" for r in rows),
                        emails=sum(r["channel"] == "email" for r in rows),
                        whatsapp=sum(r["channel"] == "whatsapp" for r in rows))


def _plan_set_wise(session: Session, notice: Notice, sms_for, email_body: str, after: int = 0,
                   before: int | None = None) -> None:
    """Plan a broadcast to its list members with ids in [after, before) (one wave; before None: to the
    end) in SQL, one INSERT ... SELECT per channel; the SMS text is rendered once per language present,
    never per member. The wave's list members follow the notice's case in the same commit."""
    wave = wave_of(session, list_names(notice), after, before)
    if notice.post_id is not None and notice.kind != "correction":  # list members follow the case
        post = session.get(Post, notice.post_id)
        assert post is not None  # notices.post_id is a foreign key to posts, which are never deleted
        fanout.follow_query(session, post.thread_id, wave, reason="notified")
    members = fanout.reachable_query(wave)
    key_prefix = f"post:{notice.post_id}:" if notice.post_id else f"{NOTICE_KEY_PREFIX}{notice.id}:"
    for channel in channels_of(notice):
        # the text in every language a member can hold (LANGUAGES: the roster and the import refuse any other),
        # rendered once a notice (sms_for keeps them); asking each wave which languages it has was a query a
        # wave and channel (issue 18: 0.73 s of a 100,000-member plan). WhatsApp free-form carries the SMS text.
        bodies = {lang: sms_for(lang) for lang in LANGUAGES} if channel != "email" else {"en": email_body}
        fanout.plan_from_query(session, members, channel, purpose="notice", post_id=notice.post_id,
                               case_id=notice.case_id, key_prefix=key_prefix, bodies=bodies)
    # issue 5: mutes, pauses, digest/urgent-only and quiet hours apply to set-wise plans as to row plans;
    # only this wave's rows: the waves before it are being sent
    ladder.shape_planned(session, and_(deliveries_filter(notice), *_member_range(after, before)))


def _member_range(after: int, before: int | None) -> list:
    """Delivery filters for the members with ids in [after, before)."""
    bounds = [Delivery.member_id >= after] if after else []
    return bounds + ([Delivery.member_id < before] if before is not None else [])


def _counts(session: Session, notice: Notice) -> NoticeResult:
    counts = dict(session.execute(select(Delivery.channel, func.count()).where(deliveries_filter(notice))
                                  .group_by(Delivery.channel)).all())
    recipients = session.scalar(select(func.count(func.distinct(Delivery.member_id)))
                                .where(deliveries_filter(notice)))
    return NoticeResult(notice.id, recipients or 0, (), sms=counts.get("sms", 0), emails=counts.get("email", 0),
                        whatsapp=counts.get("whatsapp", 0))


def dispatch_notice_batches(services, notice: Notice, batch_size: int | None = None, after_member: int = 0,
                            before_member: int | None = None) -> int:
    """Queue a notice's waiting deliveries (of members in [after_member, before_member)) as bulk tasks of
    `batch_size` (default RELAY_BULK_BATCH_SIZE), streamed from the database in (member, channel) order so each batch mixes SMS and
    email; returns the number of batches."""
    size = batch_size or bulk_batch_size(services)

    def batches():
        with services.sessions() as session:
            ids = session.scalars(select(Delivery.id).where(deliveries_filter(notice), Delivery.status == "queued",
                                                            *_member_range(after_member, before_member))
                                  .order_by(Delivery.member_id, Delivery.channel)
                                  .execution_options(yield_per=size * 10))
            chunk: list[int] = []
            for delivery_id in ids:
                chunk.append(delivery_id)
                if len(chunk) == size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    return dispatch_batches(services, batches())


def send_scheduled(services, now: datetime | None = None) -> list[NoticeResult]:
    """Send every scheduled notice now due, each exactly once however many beats run; expire the rest."""
    now = now or utcnow()
    with transaction(services.sessions) as session:
        session.execute(update(Notice).where(Notice.status == "scheduled", Notice.expires_at <= now)
                        .values(status="expired").execution_options(synchronize_session=False))
        due = list(session.scalars(select(Notice.id).where(Notice.status == "scheduled", Notice.scheduled_for <= now)
                                   .order_by(Notice.scheduled_for, Notice.id)))
    results = []
    for notice_id in due:
        try:
            results.append(send_notice(services, notice_id, now=now, due_only=True, actor=audit.SCHEDULER))
        except NoticeStateError:
            continue  # another beat process sent it first, or it expired meanwhile
        except NoticeError as exc:  # e.g. its case went back to draft: the coordinator decides again
            log.error("scheduled notice %s not sent, back to draft: %s", notice_id, exc)
            with transaction(services.sessions) as session:
                session.execute(update(Notice).where(Notice.id == notice_id, Notice.status == "scheduled")
                                .values(status="draft", scheduled_for=None)
                                .execution_options(synchronize_session=False))
    return results


def delivery_counts(session: Session, notice: Notice) -> dict[str, dict[str, int]]:
    """Deliveries of the notice counted by channel, then status."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(select(Delivery.channel, Delivery.status, func.count()).where(deliveries_filter(notice))
                           .group_by(Delivery.channel, Delivery.status))
    for channel, status, n in rows:
        counts.setdefault(channel, {})[status] = n
    return counts


def new_case_notice(services, case_code: str, lists: list[str], actor: audit.Actor = audit.SYSTEM,
                    confirm_identifiers: bool = False) -> NoticeResult:
    """Create and send the new-case notice for a case to the lists (SMS and email by member choice)."""
    with transaction(services.sessions) as session:
        notice = create_notice(session, kind="new_case", case_code=case_code, lists=lists)
        notice_id = notice.id
    try:
        return send_notice(services, notice_id, actor=actor, confirm_identifiers=confirm_identifiers)
    except IdentifiersFound:  # issue 16: refused, so the one-step notice is not left behind as a draft
        with transaction(services.sessions) as session:
            session.execute(update(Notice).where(Notice.id == notice_id, Notice.status == "draft")
                            .values(status="cancelled"))
        raise
