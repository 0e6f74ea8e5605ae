"""Handing deliveries to the queue (relay/outbound/queueing.py): a few go one task each, many at once go in bulk
tasks on the outbound queue (a reply to a case a broadcast made thousands follow, a resumed hold, the sweeper's
catch-up), each noted as dispatched; a countdown keeps them one by one; a dispatcher without batches gets them
one by one."""
from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import insert, select

from relay.infra.db import transaction
from relay.infra.dispatch import QUEUE_OUTBOUND, RecordingDispatcher
from relay.model.tables import Delivery, utcnow
from relay.outbound.queueing import ONE_TASK_EACH_UP_TO, dispatch_deliveries


def _queued(services, count: int) -> list[int]:
    now = utcnow()
    with transaction(services.sessions) as session:
        session.execute(insert(Delivery), [
            {"dedupe_key": f"test:{now.timestamp()}:{i}", "purpose": "relay", "channel": "sms",
             "to_address": f"+1202555{i:04d}", "body": "x", "status": "queued", "attempts": 0, "created_at": now,
             "updated_at": now} for i in range(count)])
        return sorted(session.scalars(select(Delivery.id).where(Delivery.dispatched_at.is_(None))))


def _dispatched(services, ids: list[int]) -> bool:
    with services.sessions() as session:
        return all(d is not None for d in session.scalars(select(Delivery.dispatched_at).where(Delivery.id.in_(ids))))


def test_a_few_go_one_task_each_many_go_in_bulk_on_the_outbound_queue(network):
    network.dispatcher = RecordingDispatcher()
    few = _queued(network, ONE_TASK_EACH_UP_TO)
    dispatch_deliveries(network, few)
    assert network.dispatcher.batches == [] and network.dispatcher.deliveries == few and _dispatched(network, few)
    many = _queued(network, 600)
    dispatch_deliveries(network, many)
    assert [len(b) for b in network.dispatcher.batches] == [250, 250, 100]
    assert network.dispatcher.batch_queues == [QUEUE_OUTBOUND] * 3
    assert sorted(sum(network.dispatcher.batches, [])) == many and _dispatched(network, many)


def test_a_countdown_or_a_dispatcher_without_batches_keeps_them_one_by_one(network):
    network.dispatcher = RecordingDispatcher()
    due = _queued(network, 30)
    dispatch_deliveries(network, due, countdown=5)
    assert network.dispatcher.batches == [] and network.dispatcher.deliveries == due
    sent: list[int] = []
    network.dispatcher = SimpleNamespace(deliver=lambda ids, countdown=None: sent.extend(ids))
    many = _queued(network, 40)
    dispatch_deliveries(network, many)
    assert sent == many and _dispatched(network, many)
