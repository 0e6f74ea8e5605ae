"""issue 17: an acknowledgement by email: a reply whose visible text is ACK, ACK 12 or OK 12 (the words of
relay/rules/acknowledgement.py). The notice is the number given, else the notice whose email it answers
(In-Reply-To / References: our signed Message-IDs), else the member's one open request. The From line
proves nothing (issue 13): the reply must come to the member's own signed reply address, or carry an
aligned SPF/DKIM pass (relay/providers/sender_auth.py); otherwise nothing is recorded and the event says
why (the email's signed link always works). Like every email, it is never answered."""
from __future__ import annotations

import hmac
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.discussion.threads import reply_tokens_in
from relay.inbound.reply_text import visible_text
from relay.infra.signing import notice_message_id, post_of_message_id, read_reply_token
from relay.model.tables import Member, Notice
from relay.notices import acks
from relay.providers import sender_auth
from relay.rules.acknowledgement import parse

_NOTICE_ID = re.compile(r"^notice-(\d{1,12})\.[a-z2-7]+@(.+)$")


def acknowledge(session: Session, settings, email, member: Member, event_id: int) -> tuple[str, str] | None:
    """(outcome, detail) when the mail is an acknowledgement (recorded or refused), else None."""
    is_ack, number = parse(visible_text(email.text, email.html) or "")
    if not is_ack:
        return None
    notice_id = number or _answered_notice(session, settings, email)
    open_ids = acks.open_requests(session, member.id)
    if notice_id is None:
        if len(open_ids) != 1:
            return "rejected", f"ACK by email: {len(open_ids)} notices wait for this member; say which (ACK 12)"
        notice_id = open_ids[0]
    if notice_id not in open_ids and not acks.acknowledged(session, notice_id, member.id):
        return "rejected", f"ACK by email: notice {notice_id} asks this member for no acknowledgement now"
    proven = _proof(settings, email, member)
    if proven is None:
        return "rejected", ("ACK by email: sender not proven (no signed reply address, no aligned SPF/DKIM pass); "
                            "nothing recorded — the link in the email works")
    new = acks.record(session, notice_id, member.id, "email", event_id)
    return "acknowledged", f"notice {notice_id} by email{'' if new else ' (again)'}; sender: {proven}"


def _answered_notice(session: Session, settings, email) -> int | None:
    secret, domain = settings.secret(), settings.email_domain
    for message_id in (*email.in_reply_to, *reversed(email.references)):
        clean = (message_id or "").strip().strip("<>").lower()
        post_id = post_of_message_id(secret, clean)
        if post_id is not None:
            found = session.scalar(select(Notice.id).where(Notice.post_id == post_id))
            if found is not None:
                return found
        match = _NOTICE_ID.match(clean)
        if match and hmac.compare_digest(notice_message_id(secret, int(match.group(1)), domain).lower(), clean):
            return int(match.group(1))
    return None


def _proof(settings, email, member: Member) -> str | None:
    for raw in reply_tokens_in(email, settings.email_domain):
        token = read_reply_token(settings.secret(), raw)
        if token is not None and token.member_id == member.id:
            return "signed reply address"
    return sender_auth.proof(email.auth, email.from_address, settings.email_trusted_authserv_ids)
