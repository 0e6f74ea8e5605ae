"""Planning deliveries set-wise: who gets a post or a reply, written as delivery rows in batches,
each row unique by its dedupe key so planning twice creates nothing new."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import ARRAY, Integer, Select, String, Text, any_, bindparam, case, cast, column, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from relay.infra.storage import insert_from_select_ignoring_conflicts, insert_ignoring_conflicts
from relay.members import ladder
from relay.model.channels import CHANNELS, WHATSAPP_PREFIX
from relay.model.tables import Delivery, Member, Participant, utcnow


def delivery_ids_for(session: Session, keys: list[str]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(keys), 500):
        ids.extend(session.scalars(select(Delivery.id).where(Delivery.dedupe_key.in_(keys[start:start + 500]))))
    return sorted(ids)


def plan(session: Session, rows: list[dict]) -> list[int]:
    """Insert delivery rows (skipping those that exist) and return the ids of all of them."""
    return sorted(delivery_id for delivery_id, _purpose in _plan(session, rows))


def plan_by_purpose(session: Session, rows: list[dict]) -> dict[str, list[int]]:
    """plan(), with the ids by purpose: {purpose: ids}."""
    found: dict[str, list[int]] = {}
    for delivery_id, purpose in sorted(_plan(session, rows)):
        found.setdefault(purpose, []).append(delivery_id)
    return found


def _plan(session: Session, rows: list[dict]) -> list[tuple[int, str]]:
    now = utcnow()
    planned = rows
    rows = ladder.shape_rows(session, rows, now)  # issue 5: mutes, pauses, digest/urgent-only, quiet hours
    if len(rows) < len(planned):  # issue 20: the Reach page counts what the ladder held back
        kept = {id(row) for row in rows}
        ladder.count_held_back(session, [row for row in planned if id(row) not in kept], now)
    if not rows:
        return []
    for row in rows:  # every row needs the same keys for one executemany
        for optional in ("post_id", "case_id", "member_id"):
            row.setdefault(optional, None)
        row.setdefault("status", "queued")
        row.setdefault("channel", "sms")
        row.setdefault("attempts", 0)
        row.setdefault("created_at", now)
        row.setdefault("updated_at", now)
    keys = [r["dedupe_key"] for r in rows]
    if session.get_bind().dialect.name == "postgresql":  # one statement (the rows as JSON), and only missing keys read
        inserted = insert_rows_set_wise(session, Delivery.__table__, rows, (Delivery.id, Delivery.purpose,
                                                                      Delivery.dedupe_key))
        found = [(row[0], row[1]) for row in inserted]
        seen = {row[2] for row in inserted}
        missing = [key for key in keys if key not in seen]
        if missing:
            found.extend(session.execute(select(Delivery.id, Delivery.purpose).where(
                Delivery.dedupe_key == func.any(bindparam("keys", missing, type_=ARRAY(String))))).all())
        return found
    insert_ignoring_conflicts(session, Delivery.__table__, rows)
    found = []
    for start in range(0, len(keys), 500):
        found.extend(session.execute(select(Delivery.id, Delivery.purpose)
                                     .where(Delivery.dedupe_key.in_(keys[start:start + 500]))).all())
    return found


_SET_INSERTS: dict[tuple, Any] = {}


def _json_default(value):
    """JSON for the values json.dumps does not know: timestamps as ISO 8601 with their offset (naive ones are
    UTC, as relay.model.tables.UTCDateTime reads them), dates as ISO dates."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in a set-wise insert")


def insert_rows_set_wise(session: Session, table, rows: list[dict], returning=()) -> list:
    """PostgreSQL: INSERT ... SELECT FROM json_to_recordset(:rows) AS r(col type, ...) ON CONFLICT DO NOTHING
    [RETURNING]: many rows in one statement whose text does not depend on how many (built once per table and
    columns), the rows as ONE JSON parameter. An executemany sends one statement per row, and a multi-row VALUES
    list as many parameters as values, which the driver parses again for every batch. One array per column
    (`unnest`) was the same statement, but psycopg dumps a Python list in Python, element by element: ~40 % of
    this function's CPU, against json.dumps in C (issue 18). Returns the RETURNING rows (inserted rows only)."""
    columns = sorted({name for row in rows for name in row})
    key = (table.name, tuple(columns), tuple(str(c) for c in returning))
    statement = _SET_INSERTS.get(key)
    if statement is None:
        rows_json = cast(bindparam("rows", type_=Text), postgresql.JSON)
        values = (func.json_to_recordset(rows_json)
                  .table_valued(*[column(name, table.c[name].type) for name in columns])
                  .render_derived(with_types=True))  # AS anon_1(col TYPE, ...)
        source = select(*[values.c[name] for name in columns])
        statement = postgresql.insert(table).from_select(columns, source).on_conflict_do_nothing()
        if returning:
            statement = statement.returning(*returning)
        _SET_INSERTS[key] = statement
    payload = json.dumps([{name: row.get(name) for name in columns} for row in rows], default=_json_default,
                         separators=(",", ":"))
    result = session.execute(statement, {"rows": payload})
    return list(result) if returning else []


def reachable_members(session: Session, member_filter, exclude_member_id: int | None = None):
    """Active members matching `member_filter` with the channels they take now (chosen, an address,
    not opted out, email not suspended after bounces)."""
    return session.execute(reachable_query(member_filter, exclude_member_id)).all()


def reachable_query(member_filter, exclude_member_id: int | None = None):
    """The query behind reachable_members(), for planning set-wise in SQL (plan_from_query)."""
    query = (
        select(Member.id, Member.phone, Member.email, Member.language,
               (Member.phone.is_not(None) & Member.sms_discussion.is_(True)
                & Member.sms_opted_out_at.is_(None)).label("takes_sms"),
               (Member.email.is_not(None) & Member.email_discussion.is_(True)
                & Member.email_opted_out_at.is_(None) & Member.email_suspended_at.is_(None)).label("takes_email"),
               # issue 19: WhatsApp only with a recorded opt-in; the number defaults to the phone
               func.coalesce(Member.whatsapp, Member.phone).label("whatsapp"),
               (func.coalesce(Member.whatsapp, Member.phone).is_not(None) & Member.whatsapp_discussion.is_(True)
                & Member.whatsapp_opted_in_at.is_not(None)
                & Member.whatsapp_opted_out_at.is_(None)).label("takes_whatsapp"))
        .where(Member.active.is_(True), member_filter)
        .distinct()
        .order_by(Member.id)
    )
    if exclude_member_id is not None:
        query = query.where(Member.id != exclude_member_id)
    return query


_PARTICIPANTS: dict[bool, Select] = {}


def participants(session: Session, thread_id: int, exclude_member_id: int | None):
    """Members following the thread, with the channels they take now. The statement is built once per
    process (with the thread and the excluded member as parameters): building it and its cache key again
    for every reply was a noticeable share of a drained reply's CPU."""
    excluding = exclude_member_id is not None
    statement = _PARTICIPANTS.get(excluding)
    if statement is None:
        followers = select(Participant.member_id).where(Participant.thread_id == bindparam("thread_id"))
        statement = reachable_query(Member.id.in_(followers))
        if excluding:  # as reachable_query(..., exclude_member_id) writes it
            statement = statement.where(Member.id != bindparam("exclude_member_id"))
        _PARTICIPANTS[excluding] = statement
    return session.execute(statement, {"thread_id": thread_id, "exclude_member_id": exclude_member_id}).all()


_BY_THREAD: dict[bool, Select] = {}


def participants_by_thread(session: Session, thread_ids: list[int]) -> dict[int, list]:
    """participants() of many threads in one query: {thread id: rows in member id order} (each row also
    has its thread_id). Built once per process, like participants(); on PostgreSQL the threads are one
    array parameter (`= ANY`), not a placeholder each (relay/infra/storage.py in_values says why)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = _BY_THREAD.get(postgres)
    if statement is None:
        threads = (Participant.thread_id == any_(bindparam("thread_ids", type_=ARRAY(Integer))) if postgres
                   else Participant.thread_id.in_(bindparam("thread_ids", expanding=True)))
        statement = _BY_THREAD[postgres] = (
            reachable_query(threads).join(Participant, Participant.member_id == Member.id)
            .add_columns(Participant.thread_id).order_by(None).order_by(Participant.thread_id, Member.id))
    found: dict[int, list] = {}
    for row in session.execute(statement, {"thread_ids": list(thread_ids)}):
        found.setdefault(row.thread_id, []).append(row)
    return found


@dataclass(frozen=True)
class Recipient:
    member_id: int
    phone: str | None
    email: str | None
    language: str
    channels: tuple[str, ...]  # the channels a message goes to them on, in CHANNELS order
    whatsapp: str | None = None  # their WhatsApp number (E.164), when they take WhatsApp

    def address(self, channel: str) -> str | None:
        """The to_address of a delivery on `channel` (WhatsApp with Twilio's `whatsapp:` prefix)."""
        if channel == "whatsapp":
            return f"{WHATSAPP_PREFIX}{self.whatsapp}" if self.whatsapp else None
        return self.phone if channel == "sms" else self.email


def recipients_from(members, wanted: set[str], allowed: dict[int, set[str]] | None = None) -> list[Recipient]:
    """Recipients from reachable_members() rows: the wanted channels each takes (and, if given, is allowed)."""
    found = []
    for m in members:
        takes = {"sms": m.takes_sms, "email": m.takes_email, "whatsapp": m.takes_whatsapp}
        channels = tuple(c for c in CHANNELS if c in wanted and takes[c]
                         and (allowed is None or c in allowed.get(m.id, ())))
        if channels:
            found.append(Recipient(m.id, m.phone, m.email, m.language or "en", channels, m.whatsapp))
    return found


def delivery_rows(recipients: list[Recipient], *, purpose: str, post_id: int | None, case_id: int | None,
                  sms_text, email_body: str, key=None) -> list[dict]:
    """One delivery row per recipient x channel: `sms_text(language)` gives the SMS body; the email is
    composed when it is sent. Keyed by post (`key(member_id, channel)` for messages with no post)."""
    rows = []
    for r in recipients:
        for channel in r.channels:
            dedupe_key = key(r.member_id, channel) if key else f"post:{post_id}:{r.member_id}:{channel}"
            rows.append({"dedupe_key": dedupe_key,
                         "purpose": purpose, "post_id": post_id, "case_id": case_id, "member_id": r.member_id,
                         "channel": channel, "to_address": r.address(channel),
                         "body": email_body if channel == "email" else sms_text(r.language)})
    return rows


def follow(session: Session, thread_id: int, member_ids: list[int], reason: str) -> None:
    """Make members participants of a thread (idempotent)."""
    now = utcnow()
    insert_ignoring_conflicts(session, Participant.__table__, [
        {"thread_id": thread_id, "member_id": mid, "reason": reason, "created_at": now} for mid in member_ids
    ])


def follow_many(session: Session, rows: list[dict]) -> None:
    """follow() for many (thread, member) pairs at once: rows of thread_id, member_id, reason, created_at."""
    if rows and session.get_bind().dialect.name == "postgresql":
        insert_rows_set_wise(session, Participant.__table__, rows)
    else:
        insert_ignoring_conflicts(session, Participant.__table__, rows)


def plan_from_query(session: Session, query, channel: str, *, purpose: str, post_id: int | None,
                    case_id: int | None, key_prefix: str, bodies: dict[str, str], dispatched: bool = True) -> None:
    """Plan one channel of a broadcast in one INSERT ... SELECT: a delivery per member the
    reachable_query() selects who takes `channel`, keyed `<key_prefix><member id>:<channel>`, with the
    body for the member's language (`bodies`, "en" the fallback). No recipient list is loaded into
    Python, so 100,000 members cost one statement.

    `dispatched` stamps dispatched_at at once: the rows are queued in batches right after the commit,
    and a broker outage is recovered by the sweeper exactly as for rows never dispatched."""
    members = query.order_by(None).subquery()
    takes = {"sms": members.c.takes_sms, "email": members.c.takes_email, "whatsapp": members.c.takes_whatsapp}[channel]
    language = func.coalesce(members.c.language, "en")
    fallback = bodies.get("en", next(iter(bodies.values()), ""))
    others = [(language == lang, literal(text, String)) for lang, text in bodies.items() if lang != "en"]
    body = case(*others, else_=literal(fallback, String)) if others else literal(fallback, String)
    now = utcnow()
    columns = {
        "dedupe_key": literal(key_prefix, String) + cast(members.c.id, String) + literal(f":{channel}", String),
        "purpose": literal(purpose, String),
        "post_id": literal(post_id, Delivery.post_id.type),
        "case_id": literal(case_id, Delivery.case_id.type),
        "member_id": members.c.id,
        "channel": literal(channel, String),
        "to_address": {"sms": members.c.phone, "email": members.c.email,
                       "whatsapp": literal(WHATSAPP_PREFIX, String) + members.c.whatsapp}[channel],
        "body": body,
        "status": literal("queued", String),
        "attempts": literal(0),
        "created_at": literal(now, Delivery.created_at.type),
        "updated_at": literal(now, Delivery.updated_at.type),
    }
    if dispatched:
        columns["dispatched_at"] = literal(now, Delivery.dispatched_at.type)
    chosen = select(*[expr.label(name) for name, expr in columns.items()]).where(takes.is_(True))
    insert_from_select_ignoring_conflicts(session, Delivery.__table__, list(columns), chosen)


def follow_query(session: Session, thread_id: int, member_filter, reason: str) -> None:
    """follow() for every member matching `member_filter`, in one INSERT ... SELECT."""
    chosen = select(literal(thread_id).label("thread_id"), Member.id.label("member_id"),
                    literal(reason, String).label("reason"),
                    literal(utcnow(), Participant.created_at.type).label("created_at")).where(member_filter)
    insert_from_select_ignoring_conflicts(session, Participant.__table__,
                                          ["thread_id", "member_id", "reason", "created_at"], chosen)
