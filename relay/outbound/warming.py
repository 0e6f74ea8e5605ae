"""A worker process made ready for its first broadcast batch before that batch arrives (issue 18).

A fresh pool process's first bulk batch took ~0.3 s where the next ones took ~0.08 s (cProfile of a new
process, 100 emails): it opened its database connection (~20 ms), compiled the batch's SQL statements
(~60 ms: SQLAlchemy compiles a statement once per engine, then reuses it), compiled the notice email
templates (Jinja, ~50 ms) and composed its first MIME message, all while the broadcast's first members
waited. `warm_up` does that work when the process starts, before any task: it runs the batch's statements
against rows that cannot exist (id -1) in a transaction it rolls back (on PostgreSQL), and renders a
new-case and a notice email in every language from objects that are never stored. It sends nothing and
writes nothing; what it does is bulk.send_batch's own code, so it stays in step with it."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from relay.members import ladder
from relay.model.notice_refs import delivery_key, notice_of
from relay.model.tables import Case, Delivery, Notice, Post, Thread, utcnow
from relay.outbound import bulk, hold
from relay.outbound.deliveries import claim_many
from relay.render import i18n, mail

NOBODY = -1  # an id no row has (serial ids start at 1; and -1 is not falsy, as 0 would be where an id is optional)


def warm_up(services) -> None:
    """Open a database connection and compile a bulk batch's statements (on PostgreSQL), then the notice email
    templates. Not on SQLite (the embedded store of `relay up` and the tests): one writer at a time, and its
    claim's UPDATE would hold that one writer's lock while every process of `relay up` starts, for a broadcast
    speed nobody asks of it."""
    if services.engine.dialect.name == "postgresql":
        statements(services)
    emails(services.settings)


def statements(services) -> None:
    """A batch's statements (bulk._prepare, checks, the record), each run once against no rows, rolled back."""
    now = utcnow()
    with services.sessions() as session:
        hold.is_on(session)
        claim_many(session, [NOBODY], timedelta(seconds=1), now)
        bulk._load(session, [NOBODY])
        for delivery in (Delivery(purpose="notice", post_id=NOBODY, dedupe_key=f"post:{NOBODY}"),
                         Delivery(purpose="notice", post_id=None, dedupe_key=delivery_key(NOBODY, NOBODY, "email"))):
            notice_of(session, delivery)
        rows = [{"dedupe_key": f"post:{NOBODY}", "purpose": "notice", "member_id": NOBODY, "case_id": NOBODY,
                 "channel": "email", "post_id": NOBODY},
                {"dedupe_key": delivery_key(NOBODY, NOBODY, "sms"), "purpose": "notice", "member_id": NOBODY,
                 "case_id": None, "channel": "sms", "post_id": None}]
        ladder.shape_rows(session, rows, now, zones={NOBODY: None})
        for model in (Post, Thread, Case):  # what a notice's email is rendered from (bulk.NoticeEmails)
            session.get(model, NOBODY)
        mail.thread_references(session, services.settings, Post(id=NOBODY, thread_id=NOBODY))
        bulk._record_accepted(session, [(NOBODY, None), (NOBODY - 1, None)], now)  # a batch: many rows
        bulk._raced_statuses(session, [f"SM{NOBODY}"])
        session.rollback()


def emails(settings) -> None:
    """A new-case email and a notice email in every language relay speaks, composed as bulk.NoticeEmails
    composes them, from a case and notices that are never stored."""
    case = Case(number=NOBODY, title="warm-up", chief_complaint="warm-up", visibility="public")
    addressee = SimpleNamespace(name="warm-up", email="warm-up@placeholder.invalid")
    unsubscribe = (f"{settings.public_base_url}/unsubscribe/warm-up", "mailto:unsubscribe@placeholder.invalid")
    now = utcnow()
    for kind in ("new_case", "guideline"):
        notice = Notice(kind=kind, severity="routine", title="warm-up", body="warm-up")
        for language in i18n.languages():
            subject, template, context = mail.notice_parts(settings, notice, case, language, unsubscribe[0], "warm-up")
            context["preferences_url"] = f"{settings.public_base_url}/preferences/warm-up"
            mail.compose_message(settings, addressee, settings.network_name, subject, now, "warm-up@placeholder.invalid",
                                 [], None, context["url"], True, unsubscribe,
                                 *mail._parts(settings, template, language, context)).as_bytes()
