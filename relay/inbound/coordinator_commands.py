"""issue 17: carrying out a coordinator's command from their phone (the words are parsed by
relay/rules/coordinator_command.py): NOTICE / URGENT make a draft and answer with its preview and a
confirmation code; SEND <code> / CANCEL <code> act on what the code stands for; STATUS <n> counts;
HOLD ALL / RESUME ALL ask for a code first; STAND DOWN <n> stops a sent notice and its escalation at once
(no code: the point is to stop calls that are coming; the answer names the notice and its title).

A confirmation code is random (`secrets`, 6 characters of 32: about a billion), stored only as its
SHA-256, bound to the number it was sent to, the member and the draft (or the hold), used once (an
atomic UPDATE ... WHERE used_at IS NULL), and dead after 15 minutes. A code from another number is
refused and left alone, so it cannot be burnt by someone else either. Every step is audited with the
phone it came from. The permission is checked here again, in the core, whatever the rule decided."""
from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from relay.access.permissions import Forbidden, require
from relay.infra import audit
from relay.infra.settings import SettingsError, parse_duration
from relay.model.tables import Member, MemberList, Notice, utcnow
from relay.model.urgent import ConfirmationCode
from relay.notices import acks
from relay.notices.lifecycle import (
    NoticeError,
    NoticeNotFound,
    NoticeStateError,
    cancel_notice,
    create_notice,
    send_notice,
    stop_notice,
)
from relay.notices.preview import preview_notice
from relay.notices.status import live_counts
from relay.outbound import hold
from relay.render.i18n import N_, say, translate
from relay.rules.coordinator_command import CODE_ALPHABET, CODE_LENGTH, PERMISSIONS, Command, parse

log = logging.getLogger(__name__)

CODE_LIFETIME = timedelta(minutes=15)
TITLE_CHARS = 120  # a longer text is the body, its start the title


@dataclass
class After:
    """What the processor does once the command's transaction has committed."""
    send_notice_id: int | None = None
    dispatch_waiting: bool = False
    actor: audit.Actor = audit.SYSTEM


def run_after(services, after: After) -> None:
    """After the commit: send the confirmed notice now (beat sends it if this never runs), dispatch what a
    resume released (the sweeper would, later)."""
    if after.send_notice_id is not None:
        try:
            send_notice(services, after.send_notice_id, due_only=True, actor=after.actor)
        except NoticeStateError:
            log.info("notice %s was already sent by beat", after.send_notice_id)
    if after.dispatch_waiting:
        hold.dispatch_waiting(services)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def apply(session: Session, settings, member: Member, body: str, address: str, channel: str, plan,
          now: datetime | None = None) -> tuple[str, After]:
    """Carry out the command in `body` from `member` at `address` (their phone, or email address); plan the
    answer with plan.reply(template, **context). Returns (outcome detail, what to do after the commit)."""
    now = now or utcnow()
    command = parse(body)
    after = After()
    if command is None:  # the rule matched, so only a changed body gets here
        return "unparsed", after
    actor = audit.Actor(f"member:{member.id}", channel, member.id)
    try:
        require(member.role_set if member.active else (), PERMISSIONS[command.verb])
    except Forbidden as exc:
        audit.record(session, "command.refused", f"member:{member.id}", actor, address=address,
                     command=command.verb, reason=str(exc))
        plan.reply("not_authorised")
        return "refused", after
    if command.verb in ("notice", "urgent"):
        return _draft(session, settings, member, command, address, actor, plan, now), after
    if command.verb in ("hold", "resume"):
        code = _issue(session, command.verb, None, member, address, now)
        audit.record(session, f"command.{command.verb}", "sending", actor, address=address)
        plan.reply("command_hold_confirm", what="hold" if command.verb == "hold" else "resume", code=code)
        return f"{command.verb}:code", after
    if command.verb == "status":
        return _status(session, command.notice_id, actor, address, plan, member.language), after
    if command.verb == "stand_down":
        return _stand_down(session, member, command.notice_id, actor, plan, now), after
    return _use_code(session, settings, member, command, address, actor, plan, now, after), after


def _draft(session: Session, settings, member: Member, command: Command, address: str, actor, plan,
           now: datetime) -> str:
    names = _list_names(session, command.lists)
    missing = [n for n in command.lists if n not in names]
    if missing:
        plan.reply("command_error", reason=translate(member.language, N_("no list named %(names)s. Nothing was created."),
                                                     names=", ".join(missing)))
        return "unknown_list"
    window = None
    if command.ack is not None:
        try:
            window = parse_duration(command.ack, "ACK") if command.ack else settings.ack_window
        except SettingsError:
            plan.reply("command_error", reason=translate(member.language, N_("ACK %(value)s is not a duration like 30m "
                                                                             "or 2h."), value=command.ack))
            return "bad_ack"
    text = command.text
    title, body = (text, "") if len(text) <= TITLE_CHARS else (text[:TITLE_CHARS - 1].rstrip() + "…", text)
    try:
        notice = create_notice(session, kind="announcement", title=title, body=body, lists=list(names.values()),
                               severity="urgent" if command.verb == "urgent" else "routine",
                               created_by=member.id, now=now)
    except NoticeError as exc:
        plan.reply("command_error", reason=translate(member.language, N_("%(why)s. Nothing was created."),
                                                     why=say(member.language, exc)))
        return "invalid"
    if window is not None:
        notice.ack_within_s = int(window.total_seconds())
    session.flush()
    code = _issue(session, "send", notice.id, member, address, now)
    audit.record(session, "command.draft", f"notice:{notice.id}", actor, address=address,
                 severity=notice.severity, lists=notice.lists, ack_within_s=notice.ack_within_s)
    preview = preview_notice(session, settings, notice.id)
    sms = preview.sms[0] if preview.sms else None
    plan.reply("command_preview", notice=notice.id, urgent=notice.severity == "urgent", lists=notice.lists.replace(";", ","),
               sms=preview.channels.get("sms", 0), email=preview.channels.get("email", 0),
               encoding=sms.encoding if sms else "-", segments=sms.segments if sms else 0,
               cost=f"{preview.estimated_cost_usd:.2f}" if preview.estimated_cost_usd is not None else "?",
               ack=_minutes(notice.ack_within_s), code=code)
    return f"draft:{notice.id}"


def _minutes(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{max(1, seconds // 60)}m"


def _list_names(session: Session, wanted) -> dict[str, str]:
    """lower-case name -> the list's own name, for the wanted names that exist."""
    found = session.scalars(select(MemberList.name).where(func.lower(MemberList.name).in_(list(wanted))))
    return {name.lower(): name for name in found}


def _issue(session: Session, action: str, notice_id: int | None, member: Member, address: str,
           now: datetime) -> str:
    code = new_code()
    session.add(ConfirmationCode(code_hash=code_hash(code), action=action, notice_id=notice_id, member_id=member.id,
                                 address=address, created_at=now, expires_at=now + CODE_LIFETIME))
    session.flush()
    return code


def _use_code(session: Session, settings, member: Member, command: Command, address: str, actor, plan,
              now: datetime, after: After) -> str:
    row = session.scalar(select(ConfirmationCode).where(ConfirmationCode.code_hash == code_hash(command.code)))
    refusal = None
    if row is None:
        refusal = "unknown"
    elif row.address != address or row.member_id != member.id:
        refusal = "other_sender"  # left as it is: its owner can still use it
    elif row.used_at is not None:
        refusal = "used"
    elif row.expires_at <= now:
        refusal = "expired"
    if refusal is None and row is not None:
        claimed = session.execute(update(ConfirmationCode).where(  # type: ignore[attr-defined]  # DML gives a CursorResult
            ConfirmationCode.id == row.id, ConfirmationCode.used_at.is_(None), ConfirmationCode.expires_at > now,
            ConfirmationCode.address == address).values(used_at=now, outcome=command.verb)
            .execution_options(synchronize_session=False)).rowcount
        refusal = None if claimed == 1 else "used"
    if refusal is not None:
        audit.record(session, "command.code_refused", f"notice:{row.notice_id}" if row and row.notice_id else "",
                     actor, address=address, command=command.verb, reason=refusal)
        plan.reply("command_code_refused", code=command.code, reason=refusal)
        if refusal == "expired" and row is not None and row.notice_id and row.address == address:
            _drop_draft(session, row.notice_id, actor)
        return f"code_refused:{refusal}"
    assert row is not None
    if row.action in ("hold", "resume"):
        require(member.role_set, "hold.toggle")
        if command.verb == "cancel":
            audit.record(session, f"command.{row.action}_cancelled", "sending", actor, address=address)
            plan.reply("command_cancelled", what=row.action)
            return f"{row.action}:cancelled"
        changed = hold.set_hold(session, row.action == "hold", actor, f"by SMS from {address}")
        after.dispatch_waiting = row.action == "resume" and changed
        plan.reply("command_held" if row.action == "hold" else "command_resumed", changed=changed)
        return f"{row.action}:{'done' if changed else 'unchanged'}"
    notice = session.get(Notice, row.notice_id)
    if notice is None or notice.status != "draft":
        plan.reply("command_code_refused", code=command.code, reason="not_draft")
        return "code_refused:not_draft"
    if command.verb == "cancel":
        cancel_notice(session, notice.id, actor)
        plan.reply("command_cancelled", what=translate(member.language, N_("notice %(id)s"), id=notice.id))
        return f"cancelled:{notice.id}"
    # Sent by the processor right after the commit; if this worker dies first, beat sends it as a due notice.
    notice.status, notice.scheduled_for = "scheduled", now
    audit.record(session, "command.send", f"notice:{notice.id}", actor, address=address)
    after.send_notice_id, after.actor = notice.id, actor
    plan.reply("command_sent", notice=notice.id)
    return f"send:{notice.id}"


def _drop_draft(session: Session, notice_id: int, actor) -> None:
    notice = session.get(Notice, notice_id)
    if notice is not None and notice.status == "draft":
        cancel_notice(session, notice_id, actor)


def expire_drafts(session: Session, now: datetime | None = None) -> int:
    """Cancel the drafts whose confirmation code died unused (the sweeper, every 30 s). Returns how many."""
    now = now or utcnow()
    rows = list(session.scalars(select(ConfirmationCode).where(
        ConfirmationCode.used_at.is_(None), ConfirmationCode.expires_at <= now, ConfirmationCode.action == "send",
        ConfirmationCode.outcome == "")))
    dropped = 0
    for row in rows:
        row.outcome = "expired"
        notice = session.get(Notice, row.notice_id) if row.notice_id else None
        if notice is not None and notice.status == "draft":
            cancel_notice(session, notice.id, audit.SCHEDULER)
            dropped += 1
    return dropped


def _status(session: Session, notice_id: int | None, actor, address: str, plan, language: str) -> str:
    notice = session.get(Notice, notice_id) if notice_id else None
    if notice is None:
        plan.reply("command_error", reason=translate(language, N_("no notice %(id)s."), id=notice_id))
        return "status:unknown"
    counts = live_counts(session, notice)
    ack_counts = acks.counts(acks.table(session, notice)) if acks.requests_ack(notice) else None
    audit.record(session, "command.status", f"notice:{notice.id}", actor, address=address)
    plan.reply("command_status", notice=notice.id, status=notice.status, counts=counts, acks=ack_counts)
    return f"status:{notice.id}"


def _stand_down(session: Session, member: Member, notice_id: int | None, actor, plan, now: datetime) -> str:
    """STAND DOWN <n>: stop the sent notice (the core checks notice.stop again) and say what that did."""
    try:
        result = stop_notice(session, notice_id or 0, roles=member.role_set, actor=actor, now=now)
    except NoticeNotFound:
        plan.reply("command_error", reason=translate(member.language, N_("no notice %(id)s."), id=notice_id))
        return "stop:unknown"
    except NoticeError as exc:
        plan.reply("command_error", reason=say(member.language, exc))
        return "stop:refused"
    notice = session.get(Notice, result.notice_id)
    ack_counts = acks.counts(acks.table(session, notice)) if notice is not None and acks.requests_ack(notice) else None
    plan.reply("command_stopped", notice=result.notice_id, title=result.title, cancelled=result.cancelled,
               acks=ack_counts)
    return f"stop:{result.notice_id}"
