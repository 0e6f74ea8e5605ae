"""Which case a message belongs to: an explicit case code wins, else the case the member was last
notified about within the reply window, else we ask (also when two cases are too close to call)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.infra.signing import post_of_message_id, read_reply_token
from relay.library.cases import DISCARDED
from relay.model.tables import Case, Delivery, Post, Thread

# "C123 text", "#123 text", "123: text" — the code must stand alone at the start.
_CODE_PATTERNS = (
    re.compile(r"^\s*[Cc](\d{1,9})(?![\w])[\s:;,.\-]*(.*)$", re.S),
    re.compile(r"^\s*#(\d{1,9})(?![\w])[\s:;,.\-]*(.*)$", re.S),
    re.compile(r"^\s*(\d{1,9})\s*:\s*(.*)$", re.S),
)

# Session.info keys a caller that processes many messages in one transaction (relay/inbound/batch.py) may
# fill with rows it loaded in one query: {case number: Case} and {case id: Thread}. Only hits are taken
# from them (a miss is looked up as usual); the rows are the session's own, so a change made in the
# transaction is seen through them.
PRELOADED_CASES = "relay.preloaded_cases"
PRELOADED_THREADS = "relay.preloaded_threads"

CODE = "code"
RECENT = "recent"
UNKNOWN_CODE = "unknown_code"
AMBIGUOUS = "ambiguous"
NONE = "none"


@dataclass(frozen=True)
class Resolution:
    how: str
    case_id: int | None
    code: str | None
    text: str
    candidates: tuple[str, ...] = ()


def split_case_code(body: str) -> tuple[int | None, str]:
    """(case number, the rest) when the body starts with a case code, else (None, body)."""
    for pattern in _CODE_PATTERNS:
        match = pattern.match(body or "")
        if match:
            return int(match.group(1)), match.group(2).strip()
    return None, (body or "").strip()


def resolve_thread(session: Session, member_id: int, body: str, now: datetime,
                   window: timedelta, ambiguity: timedelta) -> Resolution:
    number, text = split_case_code(body)
    if number is not None:
        case = session.info.get(PRELOADED_CASES, {}).get(number) or session.scalar(
            select(Case).where(Case.number == number))
        if case is None or case.status == DISCARDED:  # a discarded draft is no case at all (issue 15)
            return Resolution(UNKNOWN_CODE, None, f"C{number}", text)
        return Resolution(CODE, case.id, case.code, text)

    last = func.max(Delivery.created_at).label("last")
    recent = session.execute(
        select(Delivery.case_id, last)
        .where(Delivery.member_id == member_id, Delivery.case_id.is_not(None),
               Delivery.created_at >= now - window)
        .group_by(Delivery.case_id)
        .order_by(last.desc())
        .limit(3)
    ).all()
    if not recent:
        return Resolution(NONE, None, None, text)
    codes = {cid: f"C{num}" for cid, num in session.execute(
        select(Case.id, Case.number).where(Case.id.in_([r.case_id for r in recent])))}
    if len(recent) > 1 and _as_aware(recent[0].last) - _as_aware(recent[1].last) < ambiguity:
        return Resolution(AMBIGUOUS, None, None, text, tuple(codes[r.case_id] for r in recent))
    return Resolution(RECENT, recent[0].case_id, codes[recent[0].case_id], text)


def _as_aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes from aggregates; all stored times are UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def ensure_thread(session: Session, case: Case) -> Thread:
    thread = session.info.get(PRELOADED_THREADS, {}).get(case.id) or session.scalar(
        select(Thread).where(Thread.case_id == case.id))
    if thread is None:
        thread = Thread(case_id=case.id)
        session.add(thread)
        session.flush()
    return thread


# ---- email

EMAIL_TOKEN = "token"
EMAIL_HEADERS = "headers"
EMAIL_SUBJECT = "subject"
TOKEN_MISMATCH = "token_mismatch"
_SUBJECT_CODE = re.compile(r"\[C(\d{1,9})\]", re.I)


@dataclass(frozen=True)
class EmailResolution:
    how: str  # token | headers | subject | token_mismatch | none
    case_id: int | None


def reply_tokens_in(email, domain: str) -> list[str]:
    """Reply tokens in the routed recipients (reply+TOKEN@our-domain) or the provider's mailbox hash."""
    tokens = []
    for address in email.recipients:
        local, _, host = address.rpartition("@")
        if host.lower() == domain and local.lower().startswith("reply+"):
            tokens.append(local.split("+", 1)[1])
    if email.mailbox_hash:
        tokens.append(email.mailbox_hash)
    return tokens


def resolve_email_thread(session: Session, secret: str, domain: str, email, member_id: int) -> EmailResolution:
    """The case an email belongs to: its reply token (which must be the sender's own), then the
    Message-IDs it answers, then a [C123] code in the subject."""
    for raw in reply_tokens_in(email, domain):
        token = read_reply_token(secret, raw)
        if token is None:
            continue
        if token.member_id != member_id:
            # A forwarded notification: the address is someone else's, so it cannot post as them.
            return EmailResolution(TOKEN_MISMATCH, None)
        if session.get(Case, token.case_id) is not None:
            return EmailResolution(EMAIL_TOKEN, token.case_id)
    for message_id in (*email.in_reply_to, *reversed(email.references)):
        post_id = post_of_message_id(secret, message_id)
        if post_id is None:
            continue
        case_id = session.scalar(select(Thread.case_id).join(Post, Post.thread_id == Thread.id)
                                 .where(Post.id == post_id))
        if case_id is not None:
            return EmailResolution(EMAIL_HEADERS, case_id)
    match = _SUBJECT_CODE.search(email.subject or "")
    if match:
        case_id = session.scalar(select(Case.id).where(Case.number == int(match.group(1)),
                                                       Case.status != DISCARDED))
        if case_id is not None:
            return EmailResolution(EMAIL_SUBJECT, case_id)
    return EmailResolution(NONE, None)
