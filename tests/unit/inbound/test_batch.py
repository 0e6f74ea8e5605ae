"""Issue 18, item 4: the drain processes a claimed run of SMS in one transaction (relay/inbound/batch.py).
What must hold: a crash mid-batch writes nothing (no post, no relay) and the events are then processed
exactly once; a batch replayed after its commit doubles nothing; the batch gives the same outcomes as
one by one, with the inbound limits and a command in the middle of the batch."""
from __future__ import annotations

import collections
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from relay.inbound import batch as inbound_batch
from relay.inbound import drain as inbound_drain
from relay.inbound import sms as processing
from relay.model.tables import Delivery, InboundEvent, Post, utcnow
from relay.notices.lifecycle import new_case_notice
from relay.sweeper import sweep
from tests.conftest import run_worker
from tests.helpers import record_sms

LEE, PARK, KIM = "+821012345602", "+821012345603", "+821012345601"
PER_POST = 4 * 2  # a post is relayed to the four other members of 'tft', by SMS and by email


class Crash(BaseException):
    """The worker process dying: not an Exception, so nothing in the drain catches it."""


def _everyone_follows_c1(network):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    network.dispatcher.deliveries.clear()
    network.dispatcher.batches.clear()
    network.dispatcher.batch_queues.clear()


def _store(network, messages: list[tuple[str, str]]) -> list[int]:
    ids = [record_sms(network, sender, body) for sender, body in messages]
    network.dispatcher.inbound.clear()  # the drain claims them itself
    return ids


def _counts(network) -> tuple[int, int, dict[str, int]]:
    with network.sessions() as session:
        posts = session.scalar(select(func.count()).select_from(Post).where(Post.inbound_event_id.is_not(None)))
        relays = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.purpose == "relay"))
        outcomes = dict(session.execute(select(InboundEvent.outcome, func.count())
                                        .where(InboundEvent.kind == "sms").group_by(InboundEvent.outcome)).all())
    return posts, relays, outcomes


def test_a_batch_is_one_transaction_and_one_dispatch(network, monkeypatch):
    _everyone_follows_c1(network)
    ids = _store(network, [(LEE, f"C1 reply {n}") for n in range(4)])
    commits = []
    real = inbound_batch.process_batch
    monkeypatch.setattr(inbound_drain, "process_batch",
                        lambda services, event_ids, process: commits.append(list(event_ids))
                        or real(services, event_ids, process))
    report = inbound_drain.drain(network)
    assert (report.processed, report.failed) == (4, 0)
    assert commits == [ids]  # all four in one batch
    posts, relays, outcomes = _counts(network)
    assert (posts, outcomes) == (4, {"posted": 4})
    assert relays == 4 * PER_POST
    assert len(network.dispatcher.deliveries) == len(set(network.dispatcher.deliveries)) == relays + 4  # + the author's answers
    # handed on as bulk tasks on the outbound queue (not behind a broadcast on the bulk queue), after the commit
    assert network.dispatcher.batch_queues == ["outbound"]
    assert sorted(network.dispatcher.batches[0]) == sorted(network.dispatcher.deliveries)
    with network.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.purpose != "notice", Delivery.dispatched_at.is_(None))) == 0


def test_a_crash_mid_batch_writes_nothing_and_the_events_are_then_processed_once(network, monkeypatch):
    _everyone_follows_c1(network)
    ids = _store(network, [(LEE, f"C1 reply {n}") for n in range(3)] + [(PARK, "C1 a reply of my own")])
    real = processing._process
    done = []

    def dies_on_the_third(session, settings, event_id, batch=None):
        if len(done) == 2:
            raise Crash("killed")
        done.append(event_id)
        return real(session, settings, event_id, batch)

    monkeypatch.setattr(processing, "_process", dies_on_the_third)
    with pytest.raises(Crash):
        inbound_drain.drain(network)
    assert done == ids[:2]  # two were processed in the batch's transaction before the crash...
    assert _counts(network) == (0, 0, {"received": 4})  # ...and none of it was committed
    assert network.dispatcher.deliveries == []
    with network.sessions() as session:
        assert [e.attempts for e in session.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids)))] == [1] * 4

    # the sweeper hands the claimed events back once their claim is old, each its own task; each is processed once
    monkeypatch.setattr(processing, "_process", real)
    long_ago = utcnow() - timedelta(minutes=10)
    with network.sessions.begin() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id.in_(ids))
                        .values(received_at=long_ago, dispatched_at=long_ago))
    assert sweep(network).inbound == 4
    assert sorted(network.dispatcher.inbound) == ids
    run_worker(network)
    posts, relays, outcomes = _counts(network)
    assert (posts, outcomes) == (4, {"posted": 4})
    assert relays == 4 * PER_POST
    with network.sessions() as session:
        keys = list(session.scalars(select(Delivery.dedupe_key).where(Delivery.purpose == "relay")))
    assert len(keys) == len(set(keys))


def test_a_batch_replayed_after_its_commit_doubles_nothing(network):
    _everyone_follows_c1(network)
    ids = _store(network, [(LEE, "C1 first"), (PARK, "C1 second"), (KIM, "C1 third")])
    assert inbound_drain.drain(network).processed == 3
    before = _counts(network)
    dispatched = list(network.dispatcher.deliveries)
    assert before[0] == 3 and before[1] == 3 * PER_POST

    # the same events handed to a batch again (a redelivered task, a sweeper racing the commit)
    report = inbound_batch.process_batch(network, ids, lambda event_id: processing.process_inbound(network, event_id))
    assert report.deliveries == 0
    assert _counts(network) == before
    assert network.dispatcher.deliveries == dispatched  # nothing dispatched twice


def test_a_failing_batch_is_rolled_back_and_its_events_go_one_by_one(network, monkeypatch, caplog):
    _everyone_follows_c1(network)
    ids = _store(network, [(LEE, "C1 one"), (PARK, "C1 two"), (KIM, "C1 three")])
    real = processing._process

    def bad_second(session, settings, event_id, batch=None):
        if event_id == ids[1]:
            raise ValueError("a bad row")
        return real(session, settings, event_id, batch)

    monkeypatch.setattr(processing, "_process", bad_second)
    report = inbound_drain.drain(network)
    assert (report.processed, report.failed) == (2, 1)
    assert "the batch failed (ValueError: a bad row)" in caplog.text
    posts, relays, outcomes = _counts(network)
    assert (posts, outcomes) == (2, {"posted": 2, "received": 1})
    with network.sessions() as session:  # the batch's attempt was given back: each counted once, one by one
        attempts = dict(session.execute(select(InboundEvent.id, InboundEvent.attempts)
                                        .where(InboundEvent.id.in_(ids))).all())
        assert attempts == {ids[0]: 1, ids[1]: 1, ids[2]: 1}
        assert session.get(InboundEvent, ids[1]).last_error == "ValueError: a bad row"


def test_limits_and_commands_in_a_batch_act_as_one_by_one(network):
    """A flood past the per-minute limit, a repeated text, and a MUTE between two posts, all in one batch."""
    _everyone_follows_c1(network)
    limit = network.settings.inbound_per_minute
    messages = [(LEE, "C1 same text"), (LEE, "C1  Same text")]  # the second repeats the first: not relayed
    messages += [(KIM, f"C1 flood {n}") for n in range(limit + 2)]  # the last three are over the limit
    messages += [(PARK, "C1 before my mute"), (LEE, "C1 relayed to Park"), (PARK, "MUTE C1"),
                 (LEE, "C1 not relayed to Park")]
    ids = _store(network, messages)
    assert len(ids) <= inbound_drain.BATCH
    assert inbound_drain.drain(network).processed == len(ids)
    with network.sessions() as session:
        outcome = dict(session.execute(select(InboundEvent.id, InboundEvent.outcome)
                                       .where(InboundEvent.id.in_(ids))).all())
        to_park = list(session.scalars(select(Delivery.body).where(Delivery.purpose == "relay",
                                                                   Delivery.to_address == PARK)))
    assert [outcome[i] for i in ids[:2]] == ["posted", "repeat"]
    assert collections.Counter(outcome[i] for i in ids[2:2 + limit + 2]) == {"posted": limit, "throttled": 2}
    assert [outcome[i] for i in ids[-4:]] == ["posted", "posted", "command:mute", "posted"]
    assert any(body.endswith("relayed to Park") for body in to_park)  # planned before the MUTE came
    assert not any(body.endswith("not relayed to Park") for body in to_park)


def test_events_attempted_before_are_never_batched():
    """A crash leaves its batch's events with an attempt counted: a later claim takes them one by one, so a
    poison event that kills the worker cannot take the others down with it (nor use up their attempts)."""
    claimed = [(1, "sms", 0), (2, "sms", 0), (3, "sms", 1), (4, "sms", 0), (5, "status", 0), (6, "sms", 0),
               (7, "email", 0), (8, "sms", 0), (9, "sms", 0)]
    assert inbound_drain._groups(claimed) == [[(1, "sms"), (2, "sms")], [(3, "sms")], [(4, "sms")], [(5, "status")],
                                              [(6, "sms")], [(7, "email")], [(8, "sms"), (9, "sms")]]


def test_a_held_reply_and_its_correction_in_one_batch(network):
    """The batch knows which senders have a held message (one query); a reply held inside the batch counts
    too, so its author's corrected reply later in the same batch still replaces it."""
    from relay.model.tables import HeldMessage

    _everyone_follows_c1(network)
    ids = _store(network, [(LEE, "C1 pt RRN 550315-1234567, GGO"), (PARK, "C1 an ordinary reply"),
                           (LEE, "C1 GGO both lower lobes (identifier removed)")])
    assert inbound_drain.drain(network).processed == 3
    with network.sessions() as session:
        outcome = dict(session.execute(select(InboundEvent.id, InboundEvent.outcome)
                                       .where(InboundEvent.id.in_(ids))).all())
        held = session.scalar(select(HeldMessage))
    assert [outcome[i] for i in ids] == ["held", "posted", "posted"]
    assert held.status == "dropped" and held.body == ""


def test_the_batch_limits_count_events_whose_body_retention_already_emptied(network):
    """The batch reads the senders' recent events by sender and time whatever the retention: events whose body
    the retention emptied still count, as in the per-event query, with or without their bodies."""
    from dataclasses import replace

    from relay.inbound import limits

    earlier = _store(network, [(LEE, f"C1 earlier {n}") for n in range(3)])
    now_id = _store(network, [(LEE, "C1 now")])[0]
    with network.sessions.begin() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id.in_(earlier)).values(
            received_at=utcnow() - timedelta(seconds=45), raw="", raw_purged_at=utcnow(), outcome="posted"))
    settings = replace(network.settings, inbound_per_minute=3)
    with network.sessions() as session:  # emptied 45 s ago, as a 30 s retention would: still counted
        event = session.get(InboundEvent, now_id)
        assert limits.over_rate(session, settings, event) is True
        assert limits.Recent(session, [event]).over_rate(settings, event) is True
    with network.sessions.begin() as session:  # with their bodies, under the default retention: the same
        session.execute(update(InboundEvent).where(InboundEvent.id.in_(earlier)).values(raw="x", raw_purged_at=None))
    with network.sessions() as session:
        event = session.get(InboundEvent, now_id)
        assert limits.Recent(session, [event]).over_rate(settings, event) is True
