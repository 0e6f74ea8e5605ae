"""Small helpers the tests share: building signed Twilio webhooks, reading rows, measuring a statement's plan."""
from __future__ import annotations

import json
import secrets
from urllib.parse import urlencode

from sqlalchemy import event as sql_events
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.infra.db import transaction
from relay.model.tables import Delivery, InboundEvent, Member
from relay.providers.twilio_sms import sign

from .conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, PUBLIC_BASE


def sms_form(sender: str, body: str, sid: str | None = None, to: str = OUR_NUMBER, **extra) -> dict[str, str]:
    form = {"MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": ACCOUNT_SID, "From": sender,
            "To": to, "Body": body, "NumMedia": "0", "SmsStatus": "received", "ApiVersion": "2010-04-01",
            "FromCountry": "", "FromCity": ""}
    form.update(extra)
    return form


def post_signed(client, path: str, form: dict[str, str], token: str = AUTH_TOKEN, base: str = PUBLIC_BASE):
    signature = sign(token, base + path, form)
    return client.post(path, data=urlencode(form), headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})


def record_sms(services, sender: str, body: str, sid: str | None = None) -> int:
    """Record an inbound SMS the way the webhook does and dispatch it; returns the event id."""
    from relay.inbound.record import record_inbound

    form = sms_form(sender, body, sid)
    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider="twilio", kind="sms", dedupe_key=form["MessageSid"],
                                  raw=urlencode(form), sender=sender)
    if recorded.created:
        from relay.infra.dispatch import dispatch_safely

        dispatch_safely(services.dispatcher.process_inbound, recorded.event_id)
    return recorded.event_id


def deliveries(services, **where) -> list[Delivery]:
    with services.sessions() as session:
        query = select(Delivery).order_by(Delivery.id)
        for key, value in where.items():
            query = query.where(getattr(Delivery, key) == value)
        return list(session.scalars(query))


def member(services, phone: str) -> Member:
    with services.sessions() as session:
        return session.scalar(select(Member).where(Member.phone == phone))


def event(services, event_id: int) -> InboundEvent:
    with services.sessions() as session:
        return session.get(InboundEvent, event_id)


def reads_english(services, who: str) -> None:
    """Make the member with this phone or email read English: for tests that read the texts relay sends a
    coordinator (Kim Jiwon's own language is Korean; issue 21 then sends her Korean, tested apart)."""
    from relay.infra.db import transaction

    with transaction(services.sessions) as session:
        found = session.scalar(select(Member).where((Member.phone == who) | (Member.email == who)))
        found.language = "en"


def at_once(function, count: int) -> list:
    """Run `function` in `count` threads released together (a barrier), for the race tests; returns what the
    calls raised, so a test asserts it is empty (a thread's exception would otherwise be lost)."""
    import threading

    barrier, errors = threading.Barrier(count), []

    def run() -> None:
        try:
            barrier.wait()
            function()
        except BaseException as exc:  # pragma: no cover - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def fresh_python(script: str) -> list[str]:
    """Run `script` in a new interpreter (what a fresh worker process has imported, and not yet) and return the
    words it printed; the test fails with its stderr if it fails."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def in_written_order(query):
    """`query` ordered as it asks, then by the primary key of what it selects from: PostgreSQL answers a query
    without ORDER BY in whatever order its pages hold, which the tables' DELETE between tests shuffles."""
    return query.order_by(*query.get_final_froms()[0].primary_key)


# ---------------------------------------------------------------- query plans (PostgreSQL; issue 18)


def captured_statements(engine, run) -> list[tuple[str, object]]:
    """(statement, parameters) of each statement run(session) sends, as relay sends them; its work rolled back."""
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sql_events.listen(engine, "before_cursor_execute", keep)
    try:
        with Session(engine) as session:
            run(session)
            session.rollback()
    finally:
        sql_events.remove(engine, "before_cursor_execute", keep)
    return statements


def explained(engine, run, starts: str) -> dict:
    """The plan of the statement starting with `starts` that run(session) executes: captured as relay sends it,
    then run again under EXPLAIN (ANALYZE, FORMAT JSON) and rolled back (run's own work is rolled back too)."""
    (statement, parameters), = [s for s in captured_statements(engine, run) if s[0].lstrip().upper().startswith(starts)]
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()
        conn.rollback()
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def rows_looked_at(node: dict) -> int:
    """The rows a scan node read over all its loops: those it returned and those it read and dropped."""
    per_loop = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0))
    return per_loop * node.get("Actual Loops", 1)
