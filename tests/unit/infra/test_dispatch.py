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


def test_warming_loads_what_the_first_publish_needs_and_publishes_nothing(redis_url, tmp_path):
    """The first task a process publishes imported celery.app.amqp and the broker's transport and built the
    producer pool: ~100 ms before a cold sender's (the command line's, a new web worker's) first broadcast
    batch or first drain task went out (docs/scale.md). warm() does it beforehand. Run in a new interpreter,
    where nothing has imported them yet."""
    script = f"""
import sys
from relay.infra.celery_producer import make_celery_producer
from relay.infra.dispatch import CeleryDispatcher
from tests.conftest import make_settings
settings = make_settings({str(tmp_path)!r}, "sqlite://", broker_url={redis_url!r}, broker_prefix="relay-test-warm:")
dispatcher = CeleryDispatcher(make_celery_producer(settings))
before = "celery.app.amqp" in sys.modules, "kombu.transport.redis" in sys.modules
dispatcher.warm()
print(before, "celery.app.amqp" in sys.modules, "kombu.transport.redis" in sys.modules, "amqp" in vars(dispatcher.app))
"""
    import subprocess
    import sys

    import redis

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(False,", "False)", "True", "True", "True"]
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="relay-test-warm:*")) == []  # nothing was queued
    finally:
        client.close()


def test_warming_a_dispatcher_that_cannot_reach_its_broker_does_not_raise(tmp_path, caplog):
    from relay.infra.celery_producer import make_celery_producer
    from relay.infra.dispatch import warm_quietly
    from tests.conftest import make_settings

    class Broken(CeleryDispatcher):
        def warm(self) -> None:
            raise ConnectionError("broker unavailable (test)")

    settings = make_settings(tmp_path, "sqlite://", broker_url="redis://127.0.0.1:9/0")
    warm_quietly(Broken(make_celery_producer(settings)))
    assert "broker unavailable (test)" in caplog.text
