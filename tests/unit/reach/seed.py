"""Reach test data: deliveries, replies, views, readers and consent changes spread over 40 days."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import (
    Case,
    CaseDayViews,
    ConsentEvent,
    Delivery,
    Member,
    Notice,
    Post,
    ReaderDay,
    Thread,
)

TODAY = date(2026, 11, 30)


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


def seed(services, today: date = TODAY) -> None:
    """Each of the last 40 days (n = 0..39 days ago): n % 3 + 1 SMS delivered, 1 email failed, one reply
    by SMS every other day, case views, readers; an opt-out and a ladder step each week."""
    with transaction(services.sessions) as session:
        c2 = create_case(session, "Second case")
        c1 = session.scalar(select(Case).where(Case.number == 1))
        members = list(session.scalars(select(Member).order_by(Member.id)))
        thread = session.scalar(select(Thread).where(Thread.case_id == c1.id))
        if thread is None:
            thread = Thread(case_id=c1.id)
            session.add(thread)
            session.flush()
        serial = 0
        for n in range(40):
            day = today - timedelta(days=n)
            for k in range(n % 3 + 1):
                serial += 1
                session.add(Delivery(dedupe_key=f"t:{serial}", purpose="notice", channel="sms", to_address="+1",
                                     body="x", status="delivered", member_id=members[0].id, created_at=at(day, k)))
            serial += 1
            session.add(Delivery(dedupe_key=f"t:{serial}", purpose="relay", channel="email", to_address="a@b",
                                 body="x", status="failed", member_id=members[1].id, created_at=at(day)))
            if n % 2 == 0:
                session.add(Post(thread_id=thread.id, author_id=members[0].id, kind="reply", channel="sms",
                                 body="r", created_at=at(day)))
            session.add(CaseDayViews(case_id=c1.id, day=day, views=n + 1))
            if n < 10:
                session.add(CaseDayViews(case_id=c2.id, day=day, views=1))
            session.add(ReaderDay(day=day, visitors=n + 2, members=1))
            if n % 7 == 0:
                session.add(ConsentEvent(member_id=members[2].id, channel="sms", action="opt_out", source="sms:STOP",
                                         created_at=at(day)))
                session.add(ConsentEvent(member_id=members[2].id, channel="sms", action="digest", source="sms:DIGEST",
                                         created_at=at(day)))
        session.add(Notice(kind="announcement", lists="tft", title="n", status="sent", sent_at=at(today - timedelta(days=3))))


@contextmanager
def signed_in_coordinator(services, *, english: bool):
    """A test client signed in as Kim Jiwon (a coordinator who reads Korean; `english` reads the pages in
    English by the cookie), on the seeded year, with the clock held at TODAY."""
    import time_machine

    from tests.console_helpers import KIM, give_password, reads_english, sign_in
    from webhooks.app import create_app

    give_password(services, KIM)
    client = create_app(services=services).test_client()
    if english:
        client = reads_english(client)
    with time_machine.travel(at(TODAY), tick=False):
        sign_in(client, KIM)
        yield client
