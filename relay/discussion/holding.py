"""Holding a member's message that carries a patient identifier (issue 16; the detection is relay/guard/).

Whatever channel a reply came in by (SMS, email, the library page), `check` decides before it is posted:
`hold` (RELAY_GUARD=hold, the default) stores it as a HeldMessage with a short code and posts nothing;
`warn` posts it and the caller tells the author; `off` does not look. The guard's verdict and the kinds
found (never the values) are written on the inbound event. A held message leaves the hold exactly once:
`release` (the author's `SEND <code>` or a coordinator) moves its status from held in one conditional
UPDATE and posts it under its own inbound event (a post is unique per event), `drop` (`DROP <code>`, a
corrected message, a coordinator) and `expire_due` (the sweeper, after RELAY_GUARD_HOLD_FOR) empty its
body. Every decision is in the audit trail.

A list may override RELAY_GUARD (`member_lists.guard`) for members who share patient data under their own
agreement. A case reaches the lists its notices went to; the strictest mode among them applies, so a case
also sent to an ordinary list stays guarded."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay import guard
from relay.access import permissions
from relay.discussion.posting import publish_reply
from relay.infra import audit
from relay.infra.dispatch import dispatch_safely
from relay.infra.metrics import GUARD_VERDICTS
from relay.infra.storage import in_values
from relay.library import mms_pictures
from relay.model.tables import Case, HeldMessage, InboundEvent, Member, MemberList, Notice, utcnow
from relay.model.translatable import N_, Translatable
from relay.render import i18n

log = logging.getLogger(__name__)

HOLD, WARN, OFF, PASS = "hold", "warn", "off", "pass"
_STRICTNESS = {OFF: 0, WARN: 1, HOLD: 2}
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read back from a phone


@dataclass(frozen=True)
class Check:
    verdict: str  # pass | hold | warn | off
    scan: guard.Scan

    @property
    def held(self) -> bool:
        return self.verdict == HOLD

    def where(self, text: str, language: str) -> str:
        return guard.describe(text, self.scan.findings, i18n.translator(language).gettext)


# Session.info key a batch (relay/inbound/batch.py) may fill with {case id: mode} for its cases (modes_for, two
# queries for the whole batch); mode_for takes hits from it and looks up a miss as usual.
GUARD_MODES = "relay.guard_modes"


def mode_for(session: Session, settings, case: Case | None) -> str:
    """RELAY_GUARD, or the strictest override of the lists the case's notices went to."""
    default = settings.guard
    if case is None:
        return default
    known = session.info.get(GUARD_MODES, {}).get(case.id)
    if known is not None:
        return known
    names: set[str] = set()
    for lists in session.scalars(select(Notice.lists).where(Notice.case_id == case.id)):
        names.update(name for name in (lists or "").split(";") if name)
    if not names:
        return default
    modes = [mode or default for mode in session.scalars(select(MemberList.guard).where(MemberList.name.in_(names)))]
    return max(modes, key=_STRICTNESS.__getitem__) if modes else default


def modes_for(session: Session, settings, case_ids) -> dict[int, str]:
    """mode_for of many cases in two queries: {case id: mode}."""
    default = settings.guard
    names: dict[int, set[str]] = {case_id: set() for case_id in case_ids}
    if not names:
        return {}
    for case_id, lists in session.execute(select(Notice.case_id, Notice.lists).where(in_values(session, Notice.case_id, sorted(names)))):
        if case_id is not None:
            names[case_id].update(name for name in (lists or "").split(";") if name)
    every = sorted(set().union(*names.values()))
    guards = dict(session.execute(select(MemberList.name, MemberList.guard).where(in_values(session, MemberList.name, every))).all()) \
        if every else {}
    found = {}
    for case_id, wanted in names.items():
        modes = [guards[name] or default for name in wanted if name in guards]
        found[case_id] = max(modes, key=_STRICTNESS.__getitem__) if modes else default
    return found


def check(session: Session, settings, case: Case | None, text: str, event: InboundEvent | None = None) -> Check:
    """Scan the text under the mode that applies, and record the verdict and kinds on the event."""
    mode = mode_for(session, settings, case)
    result = guard.scan(text) if mode != OFF else guard.Scan(())
    verdict = OFF if mode == OFF else (mode if result.hold else PASS)
    if event is not None:
        event.guard_verdict, event.guard_kinds = verdict, result.kinds
    GUARD_VERDICTS.labels(verdict=verdict).inc()
    return Check(verdict, result)


def hold(session: Session, settings, *, case: Case, member: Member, text: str, channel: str,
         event_id: int | None, found: Check) -> HeldMessage:
    """Store the message, not relayed, until its author or a coordinator decides or it expires."""
    held = HeldMessage(code=new_code(), inbound_event_id=event_id, member_id=member.id, case_id=case.id,
                       channel=channel, body=text, kinds=found.scan.kinds,
                       findings=[f.as_dict() for f in found.scan.findings],
                       expires_at=utcnow() + settings.guard_hold_for)
    session.add(held)
    session.flush()
    if MEMBERS_HOLDING in session.info:
        session.info[MEMBERS_HOLDING].add(member.id)
    audit.record(session, "guard.hold", f"held:{held.id}", audit.member_actor(member, channel), case=case.code,
                 kinds=",".join(held.kinds), code=held.code)
    log.info("guard: held a %s message of member %s to %s (%s), code %s", channel, member.id, case.code,
             ",".join(held.kinds), held.code)
    return held


def new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


def waiting_for(session: Session, member_id: int, code: str) -> HeldMessage | None:
    """The member's own held message with this code, still waiting (another member's code finds nothing)."""
    return session.scalar(select(HeldMessage).where(HeldMessage.code == code.strip().upper(),
                                                    HeldMessage.member_id == member_id,
                                                    HeldMessage.status == "held"))


def _claim(session: Session, held: HeldMessage, status: str, actor: audit.Actor, now: datetime) -> bool:
    """Move the message out of the hold; False when someone else already did (exactly once)."""
    done = session.execute(update(HeldMessage).where(HeldMessage.id == held.id, HeldMessage.status == "held")
                           .values(status=status, decided_at=now, decided_by=actor.label)
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]  # DML gives a CursorResult
        return False
    session.refresh(held)
    return True


def release(session: Session, settings, held: HeldMessage, actor: audit.Actor):
    """Post the held message as written and plan its relay and its pictures (an MMS's, kept unfetched while it
    was held); (post, rows, image ids to fetch), or None when it already left the hold or its case is closed."""
    case = session.get(Case, held.case_id)
    author = session.get(Member, held.member_id)
    if case is None or author is None or case.status != "open":
        return None
    if not _claim(session, held, "released", actor, utcnow()):
        return None
    post, rows = publish_reply(session, settings, case, author, held.body, held.channel, held.inbound_event_id)
    held.post_id = post.id
    images = mms_pictures.released_pictures(session, held.inbound_event_id, case, post)
    audit.record(session, "guard.release", f"held:{held.id}", actor, case=case.code, kinds=",".join(held.kinds),
                 post=post.id)
    return post, rows, images


def drop(session: Session, held: HeldMessage, actor: audit.Actor, reason: str = "dropped") -> bool:
    """Drop the held message and empty its body; False when it had already left the hold."""
    if not _claim(session, held, "dropped", actor, utcnow()):
        return False
    held.body = ""
    audit.record(session, "guard.drop", f"held:{held.id}", actor, reason=reason, kinds=",".join(held.kinds))
    return True


# Session.info key a batch (relay/inbound/batch.py) may fill with the ids of its members who have a held
# message (one query for the batch); hold() adds to it, and supersede() skips its query for anyone else.
MEMBERS_HOLDING = "relay.members_holding"


def supersede(session: Session, member: Member, case_id: int, source: str) -> int:
    """A corrected message went through: the author's earlier held messages to that case are dropped."""
    holding = session.info.get(MEMBERS_HOLDING)
    if holding is not None and member.id not in holding:
        return 0
    waiting = session.scalars(select(HeldMessage).where(HeldMessage.member_id == member.id,
                                                        HeldMessage.case_id == case_id,
                                                        HeldMessage.status == "held")).all()
    return sum(drop(session, held, audit.member_actor(member, source), "corrected") for held in waiting)


def expire_due(session: Session, now: datetime, limit: int = 500) -> int:
    """Drop the held messages nobody decided on in time (the sweeper), each audited."""
    due = session.scalars(select(HeldMessage).where(HeldMessage.status == "held", HeldMessage.expires_at <= now)
                          .order_by(HeldMessage.id).limit(limit)).all()
    expired = 0
    for held in due:
        if _claim(session, held, "expired", audit.SYSTEM, now):
            held.body = ""
            audit.record(session, "guard.expire", f"held:{held.id}", audit.SYSTEM, kinds=",".join(held.kinds))
            expired += 1
    if expired:
        log.info("guard: %s held messages expired and were dropped", expired)
    return expired


@dataclass
class Decision:
    """What the author's SEND/DROP <code> did: outcome guard:released | guard:dropped | guard:unknown_code |
    closed_case | rejected; the case, and the relays and pictures (image ids to fetch) of a released message."""
    outcome: str
    case: Case | None = None
    rows: list[dict] | None = None
    images: list[int] | None = None


def decide(session: Session, settings, member: Member, command: str, code: str, source: str) -> Decision:
    """The author's own decision on their held message (SMS, email reply, the library page's buttons). Only
    the author's own message answers to its code; an inactive member, or one who may no longer post,
    releases nothing."""
    if not member.active or not permissions.allowed(member.role_set, "case.post"):
        return Decision("rejected")
    held = waiting_for(session, member.id, code)
    if held is None:
        return Decision("guard:unknown_code")
    actor = audit.member_actor(member, source)
    case = session.get(Case, held.case_id)
    if command == "guard_drop":
        drop(session, held, actor)
        return Decision("guard:dropped", case, [])
    released = release(session, settings, held, actor) if case is not None else None
    if released is None:  # its case closed meanwhile
        return Decision("closed_case", case, [])
    return Decision("guard:released", case, released[1], released[2])


def waiting(session: Session, limit: int = 200) -> list[HeldMessage]:
    """The messages still held, oldest first (the console's list; show them with masked_body)."""
    return list(session.scalars(select(HeldMessage).where(HeldMessage.status == "held")
                                .order_by(HeldMessage.id).limit(limit)))


class DecisionError(Translatable, ValueError):
    """A decision on a held message that is neither send nor drop."""


def decide_as_coordinator(services, held_id: int, decision: str, actor: audit.Actor, roles) -> Decision:
    """A coordinator releases (`send`) or drops (`drop`) a member's held message; audited, relays
    dispatched after the commit. Raises permissions.Forbidden for anyone else."""
    from relay.infra.db import transaction
    from relay.outbound import fanout
    from relay.outbound.queueing import dispatch_deliveries

    permissions.require(roles, "held.decide")
    if decision not in ("send", "drop"):
        raise DecisionError(N_("choose send or drop"))
    with transaction(services.sessions) as session:
        held = session.get(HeldMessage, held_id)
        if held is None or held.status != "held":
            return Decision("guard:unknown_code")
        case = session.get(Case, held.case_id)
        if decision == "drop":
            drop(session, held, actor, "dropped by a coordinator")
            return Decision("guard:dropped", case, [])
        released = release(session, services.settings, held, actor)
        if released is None:
            return Decision("closed_case", case, [])
        rows, images = released[1], released[2]
        ids = fanout.plan(session, rows) if rows else []
    dispatch_deliveries(services, ids)
    fetch_pictures(services, images)
    return Decision("guard:released", case, rows, images)


def fetch_pictures(services, image_ids: list[int] | None) -> None:
    """Queue the fetch of a released message's pictures, after the commit (the sweeper retries a lost one)."""
    for image_id in image_ids or []:
        dispatch_safely(services.dispatcher.fetch_media, image_id)


def masked_body(held: HeldMessage) -> str:
    """What a coordinator sees of a held message: the text with each finding replaced by its kind."""
    findings = [guard.Finding(f["kind"], f["start"], f["end"]) for f in held.findings or []]
    return guard.masked(held.body, findings)
