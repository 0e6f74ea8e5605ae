"""SEND <code> and DROP <code> (issue 16): the author decides on a message the patient-information guard
held (relay/discussion/holding.py), by SMS or by replying to the hold email. Only the author's own held
message answers to its code; an inactive member or one who may no longer post cannot release anything."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.discussion.holding import decide
from relay.model.tables import Member


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
        rows = decision.rows or []
        plan.rows.extend(rows)
        plan.images.extend(decision.images or [])  # a released MMS's pictures, fetched after the commit
        plan.reply("guard_released", case_id=case.id, hold_code=code, code=case.code,
                   count=len({row["member_id"] for row in rows}))
    return decision.outcome
