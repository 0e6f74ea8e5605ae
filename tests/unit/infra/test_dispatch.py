"""relay/infra/dispatch.py CeleryDispatcher: what a bulk task's message carries, read back from a real Redis broker."""
from __future__ import annotations

import base64
import json

from relay.infra.dispatch import QUEUE_BULK, TASK_DELIVER_BATCH, CeleryDispatcher, batch_argsrepr


def queued(client, prefix: str, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(f"{prefix}{queue}", 0, -1)]


def test_a_bulk_task_carries_every_id_and_a_short_summary_of_them_for_the_logs(producer):
    """Celery would otherwise write a repr of all 250 ids (cut at 1,024 characters) into every message, walking
    each id with its saferepr as the broadcast is queued: ~1 % of a broadcast's CPU (docs/scale.md)."""
    app, client, prefix = producer
    batches = [list(range(1000, 1250)), [7, 9], [11]]
    assert CeleryDispatcher(app).deliver_batches(batches) == 3
    messages = list(reversed(queued(client, prefix, QUEUE_BULK)))  # kombu's Redis LPUSHes: newest first
    assert [m["headers"]["task"] for m in messages] == [TASK_DELIVER_BATCH] * 3
    assert [m["headers"]["argsrepr"] for m in messages] == [
        "[[1000, ..., 1249]] (250 delivery ids)", "[[7, 9]]", "[[11]]"]
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert [body[0] for body in bodies] == [[batch] for batch in batches]  # the task's args: every id, in order


def test_the_summary_of_an_empty_batch_is_its_repr():
    assert batch_argsrepr([]) == "[[]]"
