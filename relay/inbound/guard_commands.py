"""SEND <code> and DROP <code> by SMS (issue 16): the author decides on a message the patient-information
guard held (relay/discussion/holding.py). Only the author's own held message answers to its code; an inactive
member or one who may no longer post cannot release anything."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.access import permissions
from relay.discussion import holding
from relay.infra import audit
from relay.model.tables import Case, Member


def apply(session: Session, settings, member: Member, verdict, plan) -> str:
    """Release or drop the member's held message; plan the answer (plan.reply) and the relays (plan.rows).
    Returns the event's outcome."""
    code = verdict.argument
    if not member.active or not permissions.allowed(member.role_set, "case.post"):
        plan.reply("not_authorised")
        return "rejected"
    held = holding.waiting_for(session, member.id, code)
    if held is None:
        plan.reply("guard_unknown_code", key=f"guard-unknown:{member.id}:{code}:{plan.event_id}", hold_code=code)
        return "guard:unknown_code"
    actor = audit.member_actor(member, "sms")
    if verdict.command == "guard_drop":
        holding.drop(session, held, actor)
        plan.reply("guard_dropped", hold_code=code)
        return "guard:dropped"
    case = session.get(Case, held.case_id)
    released = holding.release(session, settings, held, actor) if case is not None else None
    if case is None or released is None:  # its case closed meanwhile
        plan.reply("closed_case", case_id=held.case_id, code=case.code if case else "")
        return "closed_case"
    post, rows = released
    plan.rows.extend(rows)
    plan.reply("guard_released", case_id=case.id, hold_code=code, code=case.code,
               count=len({row["member_id"] for row in rows}))
    return "guard:released"
