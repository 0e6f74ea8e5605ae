"""The ingest workload's webhooks are a real discussion (bench/seed.py seed_repliers): each reply comes
from a known member, is posted on the case that member follows, and is relayed to its other followers."""
from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from bench.seed import REPLY_CASES_PER_MEMBERS, reply_case, reply_phone, seed_repliers
from relay.inbound.record import record_inbound
from relay.inbound.sms import process_inbound
from relay.infra.db import transaction
from relay.model.tables import Case, Delivery, Post, Thread
from tests.helpers import sms_form


def test_each_reply_is_posted_on_the_members_case_and_relayed_to_its_other_followers(services):
    members = 40
    assert seed_repliers(services.sessions, members) == {"members": members, "cases": members // 4}
    outcomes = []
    for i in (0, 1, 13, 39):
        form = sms_form(reply_phone(i), f"{reply_case(i, members)} bench reply {i}")
        with transaction(services.sessions) as session:
            recorded = record_inbound(session, provider="twilio", kind="sms", dedupe_key=form["MessageSid"],
                                      raw=urlencode(form), sender=form["From"])
        outcomes.append(process_inbound(services, recorded.event_id))
    assert [o.outcome for o in outcomes] == ["posted"] * 4
    with services.sessions() as session:
        relays = [sorted(session.scalars(select(Delivery.to_address).where(
            Delivery.id.in_(o.delivery_ids), Delivery.purpose == "relay"))) for o in outcomes]
        assert [len(r) for r in relays] == [REPLY_CASES_PER_MEMBERS - 1] * 4  # the three other followers
        relayed_to = set(relays[0])
        assert relayed_to == {reply_phone(i) for i in (10, 20, 30)}  # member 0's case: 0, 10, 20, 30
        posted_on = sorted(f"C{n}" for n in session.scalars(select(Case.number).join(Thread, Thread.case_id == Case.id)
                                                           .join(Post, Post.thread_id == Thread.id)))
    assert posted_on == sorted(reply_case(i, members) for i in (0, 1, 13, 39))  # C1, C2, C4, C10


def test_members_written_set_wise_are_the_rows_written_one_by_one(postgres_only_url):
    """bench/seed.py seed_network writes its members with one INSERT ... SELECT over generate_series on
    PostgreSQL; the rows (every column, defaults included) are those of the row-by-row insert."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from bench.seed import _insert_members_rows, _insert_members_set_wise, channels_of, email_only
    from relay.model.tables import Member, utcnow

    engine = create_engine(postgres_only_url)
    now = utcnow()
    columns = [c for c in Member.__table__.columns if c.name != "id"]
    for rule in (channels_of, email_only):
        written = []
        for set_wise in (True, False):
            with engine.connect() as conn, conn.begin() as outer:
                session = Session(bind=conn)
                if set_wise:
                    _insert_members_set_wise(session, 25, [rule(k) for k in range(10)], now)
                else:
                    _insert_members_rows(session, 25, rule, now)
                written.append(conn.execute(select(*columns).order_by(Member.phone)).all())
                outer.rollback()
        assert len(written[0]) == 25 and written[0] == written[1]
    engine.dispose()
