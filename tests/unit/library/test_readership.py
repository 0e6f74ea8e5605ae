"""Unique readers without tracking (issue 20, item 1): one address and agent on one day count once, the
same on the next day count again; signed-in members count as members; bots (by user agent, and by never
loading the page's image) are left out; and no table holds an address, an agent, a hash or the salt,
which in Redis expires with its day and is destroyed by the sweeper's forget_before."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import pytest
import redis
import time_machine
from sqlalchemy import select, text

from relay.infra.db import transaction
from relay.library.readership import (
    MEMBERS,
    VISITORS,
    FallbackDayStore,
    MemoryDayStore,
    RedisDayStore,
    count_reader,
    end_of_day,
    is_bot,
)
from relay.model.tables import Base, CaseDayViews, ReaderDay
from tests.console_helpers import LEE, give_password, sign_in
from webhooks.app import create_app

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
OTHER_BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ADDRESS = "203.0.113.77"
DAY1 = datetime(2026, 11, 3, 10, 0, tzinfo=timezone.utc)


def readers(services) -> dict:
    with services.sessions() as session:
        return {row.day.isoformat(): (row.visitors, row.members) for row in session.scalars(select(ReaderDay))}


def load_image(client, address: str = ADDRESS, agent: str = BROWSER):
    response = client.get("/library/seen.gif", environ_base={"REMOTE_ADDR": address},
                          headers={"User-Agent": agent})
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert "no-store" in response.headers["Cache-Control"]
    return response


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def test_one_address_and_agent_count_once_a_day_and_again_the_next_day(network, client):
    with time_machine.travel(DAY1, tick=False):
        load_image(client)
        load_image(client)  # the same reader reloads: not counted again
        load_image(client, agent=OTHER_BROWSER)  # another browser behind the same address: another reader
        load_image(client, address="198.51.100.4")  # another address
    assert readers(network) == {"2026-11-03": (3, 0)}
    with time_machine.travel(DAY1 + timedelta(days=1), tick=False):
        load_image(client)
        load_image(client)
    assert readers(network) == {"2026-11-03": (3, 0), "2026-11-04": (1, 0)}


def test_a_signed_in_member_counts_as_a_member_not_a_visitor(network, client):
    give_password(network, LEE)
    with time_machine.travel(DAY1, tick=False):
        sign_in(client, LEE)
        load_image(client)
        load_image(client, address="198.51.100.4")  # the same member from another network: still one
    assert readers(network) == {"2026-11-03": (0, 1)}


def test_bots_are_left_out_by_agent_and_by_not_loading_the_image(network, client):
    assert is_bot(GOOGLEBOT) and is_bot("") and is_bot("curl/8.5.0") and not is_bot(BROWSER)
    with time_machine.travel(DAY1, tick=False):
        load_image(client, agent=GOOGLEBOT)
        load_image(client, agent="")
        # a client that reads the page but never loads its image is no reader
        page = client.get("/library/cases/C1", headers={"User-Agent": BROWSER},
                          environ_base={"REMOTE_ADDR": ADDRESS})
        assert page.status_code == 200 and 'url(/library/seen.gif)' in page.get_data(as_text=True)
        client.get("/library/cases/C1", headers={"User-Agent": GOOGLEBOT})
    assert readers(network) == {}
    with network.sessions() as session:  # the page view is counted for the day, the bot's is not
        assert [(r.day.isoformat(), r.views) for r in session.scalars(select(CaseDayViews))] == [("2026-11-03", 1)]


def all_table_text(services) -> str:
    """Every value of every row of every table, as text (bytes as hex too)."""
    found = []
    with services.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    found.append(value.hex() if isinstance(value, bytes | memoryview) else str(value))
    return "\n".join(found)


def test_no_table_holds_an_address_an_agent_a_hash_or_the_salt(network, client):
    store = MemoryDayStore()
    client.application.extensions["relay-readers"] = store
    with time_machine.travel(DAY1, tick=False):
        load_image(client)
        client.get("/library/cases/C1", headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": ADDRESS})
    day = DAY1.date()
    salt = store.salt(day)
    digests = store._seen[(day, VISITORS)]
    assert readers(network) == {"2026-11-03": (1, 0)}
    everything = all_table_text(network)
    for secret in [ADDRESS, BROWSER, "Chrome/131", salt.hex(), *(d.hex() for d in digests)]:
        assert secret not in everything
    store.salt(day + timedelta(days=1))  # the next day's first reader: the day before is destroyed
    assert day not in store._salts and (day, VISITORS) not in store._seen


@pytest.fixture
def redis_store(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-reach-{secrets.token_hex(4)}:"
    yield RedisDayStore(client, prefix)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_in_redis_the_salt_and_hashes_expire_with_the_day_and_are_destroyed_after_it(services, redis_store):
    now = datetime.now(timezone.utc)
    today, tomorrow = now.date(), now.date() + timedelta(days=1)
    with transaction(services.sessions) as session:
        assert count_reader(session, redis_store, address=ADDRESS, user_agent=BROWSER, now=now) == VISITORS
        assert count_reader(session, redis_store, address=ADDRESS, user_agent=BROWSER, now=now) == "seen"
        assert count_reader(session, redis_store, address=ADDRESS, user_agent=BROWSER, member_id=7, now=now) == MEMBERS
        assert count_reader(session, redis_store, address=ADDRESS, user_agent=BROWSER,
                            now=now + timedelta(days=1)) == VISITORS
    assert readers(services) == {today.isoformat(): (1, 1), tomorrow.isoformat(): (1, 0)}
    client = redis_store.client
    salt_key = redis_store.key(today, "salt")
    salt = client.get(salt_key)
    assert salt and len(salt) == 32
    left = (end_of_day(today) - datetime.now(timezone.utc)).total_seconds()
    for part in ("salt", VISITORS, MEMBERS):  # gone by the end of the day at the latest
        assert 0 < client.ttl(redis_store.key(today, part)) <= left + 1
    assert salt.hex() not in all_table_text(services)
    redis_store.forget_before(tomorrow)  # what the sweeper does once the day is over
    assert not any(client.exists(redis_store.key(today, part)) for part in ("salt", VISITORS, MEMBERS))
    assert client.exists(redis_store.key(tomorrow, "salt"))


def test_a_redis_outage_counts_in_memory_and_never_fails_the_image(network, client, caplog):
    dead = RedisDayStore.from_url("redis://127.0.0.1:1/0", "x:")  # nothing listens on port 1
    client.application.extensions["relay-readers"] = FallbackDayStore(dead)
    with time_machine.travel(DAY1, tick=False):
        load_image(client)
        load_image(client)
    assert readers(network) == {"2026-11-03": (1, 0)}
    assert "Redis unavailable" in caplog.text
