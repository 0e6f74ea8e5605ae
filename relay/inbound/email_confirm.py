"""Confirming an email that did not prove its sender (issue 13, item 1).

Such a mail is kept as "unconfirmed" and the member it claims to come from is asked, at their
registered address, whether they wrote it: the email shows the text and a link signed with
RELAY_SECRET_KEY and bound to the inbound event. A forger never sees the link, because it goes to the
member's own mailbox. The link's page only shows a button (link scanners prefetch every URL in an
email); the POST posts it (relay/inbound/mail.py: confirm_held), once: the event leaves
"unconfirmed" in the same transaction, and the link expires RELAY_EMAIL_CONFIRM_WINDOW after the mail
arrived. At most PENDING_LIMIT such questions go to one member an hour, so a flood of forgeries cannot
become a flood of mail to the member (the events are kept all the same)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.infra.signing import read_signed_id
from relay.model.tables import InboundEvent, Member, utcnow
from relay.render.digest_mail import CONFIRM_POST, CONFIRM_POST_TOKEN

UNCONFIRMED = "unconfirmed"  # the inbound event's outcome while it waits
PENDING_LIMIT = 3  # confirmation emails per sender address per hour
EXCERPT = 2000  # characters of the text shown in the confirmation email


def event_of(settings, token: str) -> int | None:
    """The inbound event a confirmation token stands for, or None (forged or mangled)."""
    return read_signed_id(settings.secret(), CONFIRM_POST_TOKEN, token)


def expired(settings, event: InboundEvent, now: datetime | None = None) -> bool:
    received = event.received_at if event.received_at.tzinfo else event.received_at.replace(tzinfo=timezone.utc)
    return (now or utcnow()) - received > settings.email_confirm_window


def confirmation_rows(session: Session, settings, event: InboundEvent, member: Member, case_id: int,
                      text: str) -> list[dict]:
    """The one email asking the member to confirm (none past PENDING_LIMIT this hour)."""
    earlier = session.scalar(select(func.count()).select_from(InboundEvent).where(
        InboundEvent.kind == "email", InboundEvent.sender == event.sender, InboundEvent.id < event.id,
        InboundEvent.outcome == UNCONFIRMED, InboundEvent.received_at > event.received_at - timedelta(hours=1)))
    if (earlier or 0) >= PENDING_LIMIT:
        return []
    return [{"dedupe_key": f"confirm-post:{event.id}", "purpose": CONFIRM_POST, "channel": "email",
             "member_id": member.id, "case_id": case_id, "to_address": member.email, "body": text[:EXCERPT]}]
