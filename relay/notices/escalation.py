"""issue 17: escalating an urgent notice until each recipient has acknowledged it or the ladder is done.

For a sent notice that asks for acknowledgement (Notice.ack_within_s), measured from when it went out:

    after the ack window                 "channels": the notice again on every other channel the member takes
    after one more escalation step       "call": a Twilio voice call reading the title, "press 1 to acknowledge"
    after one more                       "report": the author gets the list of members still silent (SMS),
                                         and the console shows it (relay/notices/acks.py table); a notice
                                         with no author (the CLI's) reports to the coordinators on its
                                         lists (report_readers)

The step length is Notice.escalation_step_s, else RELAY_ESCALATION_STEP. Beat drives it (the sweeper calls
escalate() every 30 s); the state is in the database. Each step is an EscalationStep row, unique per
(notice, member, step), inserted in the same transaction as the deliveries it causes (their dedupe keys
are unique too), so a step happens at most once per member however many workers or beats run, and a
worker killed in the middle rolls the whole step back for the next sweep to do again: neither skipped
nor doubled. The deliveries are dispatched after the commit; a lost dispatch is re-queued by the
sweeper. Members who acknowledged, opted out (STOP: no SMS and no call), or said NO CALLS (no call) are
left alone, and nothing more happens once the notice has expired or is no longer "sent" (stopped:
relay.notices.lifecycle.stop_notice, which takes the same row lock). An urgent
notice goes through quiet hours, its escalation included (relay/members/ladder.py lets urgent through).
A call that is still queued when the member acknowledges is not placed (relay/outbound/call_checks.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from relay.infra.db import transaction
from relay.infra.signing import ack_token
from relay.infra.storage import insert_if_new
from relay.model.notice_refs import PREFIX as NOTICE_KEY_PREFIX
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Case, Delivery, Member, MemberList, Membership, Notice, utcnow
from relay.model.urgent import Acknowledgement, EscalationStep
from relay.notices import acks
from relay.notices.audience import sms_text
from relay.outbound import fanout
from relay.outbound.fanout import CHANNELS
from relay.outbound.queueing import dispatch_deliveries
from relay.render.texts import fit_sms, render_sms
from relay.render.twiml import call_twiml

log = logging.getLogger(__name__)

STEPS = ("channels", "call", "report")
CALL_PURPOSE, REPORT_PURPOSE = "call", "ack_report"


def call_key(notice_id: int, member_id: int) -> str:
    return f"call:{notice_id}:{member_id}"


def notice_of_call(dedupe_key: str) -> tuple[int, int] | None:
    """(notice id, member id) of a call delivery's dedupe key."""
    parts = (dedupe_key or "").split(":")
    if len(parts) == 3 and parts[0] == "call" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def gather_url(settings, notice_id: int, member_id: int) -> str:
    """Where Twilio posts the digit pressed (signed by Twilio; the token names the notice and the member)."""
    return f"{settings.public_base_url}/webhooks/twilio/voice/gather/{ack_token(settings.secret(), notice_id, member_id)}"


def step_length(settings, notice: Notice) -> timedelta:
    return timedelta(seconds=notice.escalation_step_s) if notice.escalation_step_s else settings.escalation_step


def due_steps(settings, notice: Notice, now: datetime) -> list[str]:
    """The steps whose time has come for this notice."""
    if notice.ack_within_s is None or notice.sent_at is None:
        return []
    first = notice.sent_at + timedelta(seconds=notice.ack_within_s)
    step = step_length(settings, notice)
    return [name for i, name in enumerate(STEPS) if first + i * step <= now]


@dataclass
class Escalated:
    notice_id: int
    steps: dict[str, int] = field(default_factory=dict)  # step -> members it was taken for now
    delivery_ids: list[int] = field(default_factory=list)


def escalating_notices(session: Session, settings, now: datetime) -> list[int]:
    """Sent notices that ask for acknowledgement, have not expired, and whose window has passed."""
    rows = session.execute(select(Notice.id, Notice.sent_at, Notice.ack_within_s).where(
        Notice.status == "sent", Notice.ack_within_s.is_not(None), Notice.sent_at >= now - acks.OPEN_FOR,
        or_(Notice.expires_at.is_(None), Notice.expires_at > now)).order_by(Notice.id)).all()
    return [r.id for r in rows if r.sent_at + timedelta(seconds=r.ack_within_s) <= now]


def escalate(services, now: datetime | None = None) -> list[Escalated]:
    """Take every escalation step that is due (the sweeper, every 30 s); each notice in its own transaction."""
    now = now or utcnow()
    with services.sessions() as session:
        notice_ids = escalating_notices(session, services.settings, now)
    results = []
    for notice_id in notice_ids:
        with transaction(services.sessions) as session:
            result = escalate_notice(session, services.settings, notice_id, now)
        if result.delivery_ids:
            dispatch_deliveries(services, result.delivery_ids)
        if result.steps:
            log.info("notice %s escalated: %s", notice_id, result.steps)
            results.append(result)
    return results


def escalate_notice(session: Session, settings, notice_id: int, now: datetime) -> Escalated:
    """The due steps of one notice, for the members not yet through them, in the caller's transaction."""
    result = Escalated(notice_id)
    notice = session.get(Notice, notice_id, with_for_update=True)  # one escalation of a notice at a time
    if notice is None or not acks.is_open(notice, now):
        return result
    due = due_steps(settings, notice, now)
    if not due:
        return result
    silent = _silent_members(session, notice)
    taken = {(s.member_id, s.step) for s in session.scalars(select(EscalationStep).where(
        EscalationStep.notice_id == notice.id))}
    rows: list[dict] = []
    if "channels" in due:
        todo = [m for m in silent if (m, "channels") not in taken]
        rows.extend(_other_channels(session, settings, notice, todo, now, result))
    if "call" in due:
        todo = [m for m in silent if (m, "call") not in taken]
        rows.extend(_calls(session, settings, notice, todo, now, result))
    if "report" in due:
        for reader in report_readers(session, notice):
            if (reader.id, "report") not in taken:
                rows.extend(_report(session, settings, notice, reader, silent, now, result))
    if rows:
        result.delivery_ids = fanout.plan(session, rows)
    return result


def _silent_members(session: Session, notice: Notice) -> list[int]:
    """Recipients of the notice who have not acknowledged it."""
    acked = select(Acknowledgement.member_id).where(Acknowledgement.notice_id == notice.id)
    return list(session.scalars(select(Delivery.member_id).where(
        deliveries_filter(notice), Delivery.member_id.is_not(None), Delivery.member_id.not_in(acked))
        .distinct().order_by(Delivery.member_id)))


def _take(session: Session, notice: Notice, member_id: int, step: str, detail: str, now: datetime) -> bool:
    """Insert the step's row; False when another process took it first (then this one does nothing)."""
    return insert_if_new(session, EscalationStep.__table__, dict(
        notice_id=notice.id, member_id=member_id, step=step, detail=detail, created_at=now)) is not None


def _other_channels(session: Session, settings, notice: Notice, member_ids: list[int], now: datetime,
                    result: Escalated) -> list[dict]:
    if not member_ids:
        return []
    case = session.get(Case, notice.case_id) if notice.case_id else None
    planned: dict[int, set[str]] = {}
    for member_id, channel in session.execute(select(Delivery.member_id, Delivery.channel).where(
            deliveries_filter(notice), Delivery.member_id.in_(member_ids))):
        if member_id is not None:
            planned.setdefault(member_id, set()).add(channel)
    rows = []
    reachable = {m.id: m for m in fanout.reachable_members(session, Member.id.in_(member_ids))}
    for member_id in member_ids:
        member = reachable.get(member_id)
        takes = {"sms": bool(member and member.takes_sms), "email": bool(member and member.takes_email),
                 "whatsapp": bool(member and member.takes_whatsapp and settings.whatsapp_enabled)}
        others = [c for c in CHANNELS if takes[c] and c not in planned.get(member_id, set())]
        if not _take(session, notice, member_id, "channels", ";".join(others) or "no other channel", now):
            continue
        result.steps["channels"] = result.steps.get("channels", 0) + 1
        if member is None:
            continue
        for channel in others:
            key = (f"post:{notice.post_id}:{member_id}:{channel}" if notice.post_id
                   else f"{NOTICE_KEY_PREFIX}{notice.id}:{member_id}:{channel}")
            rows.append({"dedupe_key": key, "purpose": "notice", "post_id": notice.post_id, "case_id": notice.case_id,
                         "member_id": member_id, "channel": channel,
                         "to_address": {"sms": member.phone, "email": member.email, "whatsapp": member.whatsapp}[channel],
                         "body": sms_text(settings, notice, case, member.language) if channel in ("sms", "whatsapp")
                         else (notice.body or notice.title)})
    return rows


def _calls(session: Session, settings, notice: Notice, member_ids: list[int], now: datetime,
           result: Escalated) -> list[dict]:
    rows = []
    members = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))} if member_ids else {}
    for member_id in member_ids:
        member = members.get(member_id)
        if member is None or not member.active or not member.phone or member.sms_opted_out_at is not None:
            why = "not called: no phone or opted out (STOP)"
        elif not member.calls_ok:
            why = "not called: NO CALLS"
        else:
            why = ""
        if not _take(session, notice, member_id, "call", why or "called", now):
            continue
        result.steps["call"] = result.steps.get("call", 0) + 1
        if why:
            continue
        assert member is not None and member.phone is not None
        twiml = call_twiml(notice.title, member.language, settings.network_name,
                           gather_url(settings, notice.id, member.id))
        rows.append({"dedupe_key": call_key(notice.id, member.id), "purpose": CALL_PURPOSE, "post_id": None,
                     "case_id": notice.case_id, "member_id": member.id, "channel": "voice",
                     "to_address": member.phone, "body": twiml})
    return rows


def report_readers(session: Session, notice: Notice) -> list[Member]:
    """Who gets the ladder's final report: the notice's author; a notice with no author (made with the CLI,
    which names no member, or with the service API token) or whose author is gone or inactive reports to
    the active coordinators (and admins) on the notice's lists instead, so the report never goes nowhere."""
    author = session.get(Member, notice.created_by) if notice.created_by is not None else None
    if author is not None and author.active:
        return [author]
    names = [n for n in (notice.lists or "").split(";") if n]
    on_lists = select(Membership.member_id).join(MemberList, MemberList.id == Membership.list_id).where(
        MemberList.name.in_(names or [""]))
    members = session.scalars(select(Member).where(Member.active.is_(True), Member.id.in_(on_lists))
                              .order_by(Member.id))
    return [m for m in members if m.role_set & {"coordinator", "admin"}]


def _report(session: Session, settings, notice: Notice, reader: Member, silent: list[int], now: datetime,
            result: Escalated) -> list[dict]:
    if not _take(session, notice, reader.id, "report", f"{len(silent)} still silent", now):
        return []
    result.steps["report"] = result.steps.get("report", 0) + 1
    names = [name for (name,) in session.execute(select(Member.name).where(Member.id.in_(silent or [0]))
                                                 .order_by(Member.name))]
    if not (reader.phone and reader.takes_sms):
        return []  # the console shows the list (relay/notices/acks.py)
    body = render_sms(settings.templates_dir, "escalation_report", reader.language, network=settings.network_name,
                      notice=notice.id, count=len(names), names=", ".join(names))
    key = f"ack-report:{notice.id}" if reader.id == notice.created_by else f"ack-report:{notice.id}:{reader.id}"
    return [{"dedupe_key": key, "purpose": REPORT_PURPOSE, "post_id": None,
             "case_id": None, "member_id": reader.id, "channel": "sms", "to_address": reader.phone,
             "body": fit_sms(body, f"{settings.public_base_url}/console/notices/{notice.id}")}]
