"""issue 17: what is checked just before an escalation call (purpose "call", relay/notices/escalation.py) is
placed: the member may have acknowledged, said NO CALLS, sent STOP or gone inactive since it was planned,
or the notice may have expired or stopped being "sent". Such a call is not placed (`failed` with the reason
as its code; nothing to retry)."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from relay.model.delivery_states import FAILED, OPTED_OUT
from relay.model.tables import Delivery, Member, Notice
from relay.model.urgent import Acknowledgement
from relay.outbound.deliveries import move

log = logging.getLogger(__name__)

PURPOSE = "call"


def refusal(session: Session, delivery: Delivery, member: Member | None, now: datetime) -> str | None:
    """None when the call may go; else the outcome after moving the delivery."""
    if delivery.purpose != PURPOSE:
        return None
    parts = delivery.dedupe_key.split(":")
    notice = session.get(Notice, int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None
    reason, state = None, FAILED
    if notice is None or notice.status != "sent" or (notice.expires_at is not None and notice.expires_at <= now):
        reason = "expired"
    elif member is None or not member.active:
        reason = "inactive"
    elif session.scalar(select(exists().where(Acknowledgement.notice_id == notice.id,
                                              Acknowledgement.member_id == member.id))):
        reason = "acknowledged"
    elif member.sms_opted_out_at is not None or not member.calls_ok:
        reason, state = "no_calls", OPTED_OUT
    if reason is None:
        return None
    move(session, delivery, state, error_code=reason, lease_until=None,
         error_message=f"call not placed: {reason.replace('_', ' ')} since it was planned")
    log.info("delivery %s: call not placed (%s)", delivery.id, reason)
    return "failed" if state == FAILED else "opted_out"
