"""SEND <code> and DROP <code> (issue 16): the author decides on a message the patient-information guard
held (relay/discussion/holding.py), by SMS or by replying to the hold email. Only the author's own held
message answers to its code; an inactive member or one who may no longer post cannot release anything."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from relay.access import permissions
from relay.discussion import holding
from relay.infra import audit
from relay.model.tables import Case, Member


@dataclass
class Decision:
    outcome: str  # guard:released | guard:dropped | guard:unknown_code | closed_case | rejected
    case: Case | None = None
    rows: list[dict] = field(default_factory=list)  # the relays of a released message


def decide(session: Session, settings, member: Member, command: str, code: str, source: str) -> Decision:
    if not member.active or not permissions.allowed(member.role_set, "case.post"):
        return Decision("rejected")
    held = holding.waiting_for(session, member.id, code)
    if held is None:
        return Decision("guard:unknown_code")
    actor = audit.member_actor(member, source)
    case = session.get(Case, held.case_id)
    if command == "guard_drop":
        holding.drop(session, held, actor)
        return Decision("guard:dropped", case)
    released = holding.release(session, settings, held, actor) if case is not None else None
    if released is None:  # its case closed meanwhile
        return Decision("closed_case", case)
    return Decision("guard:released", case, released[1])


def apply(session: Session, settings, member: Member, verdict, plan) -> str:
    """By SMS: decide, plan the relays (plan.rows) and the one answer (plan.reply); returns the outcome."""
    code = verdict.argument
    decision = decide(session, settings, member, verdict.command, code, "sms")
    case = decision.case
    if decision.outcome == "rejected":
        plan.reply("not_authorised")
    elif decision.outcome == "guard:unknown_code":
        plan.reply("guard_unknown_code", key=f"guard-unknown:{member.id}:{code}:{plan.event_id}", hold_code=code)
    elif decision.outcome == "guard:dropped":
        plan.reply("guard_dropped", hold_code=code)
    elif decision.outcome == "closed_case":
        plan.reply("closed_case", case_id=case.id if case else None, code=case.code if case else "")
    elif case is not None:
        plan.rows.extend(decision.rows)
        plan.reply("guard_released", case_id=case.id, hold_code=code, code=case.code,
                   count=len({row["member_id"] for row in decision.rows}))
    return decision.outcome
