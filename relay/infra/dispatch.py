"""The work queue as a port: the core asks for work to be done by id; how it is queued is an
implementation chosen when services are built (Celery in production, a recorder in tests).

Callers dispatch only after their transaction has committed, so a task never looks for a row
that is not there yet. A dispatch that fails (broker down) is logged and left to the sweeper,
which re-dispatches anything committed but never picked up."""
from __future__ import annotations

import logging
from typing import Iterable, Protocol, Sequence

log = logging.getLogger(__name__)

TASK_PROCESS_INBOUND = "relay.process_inbound"
TASK_APPLY_STATUS = "relay.apply_status"
TASK_DELIVER = "relay.deliver"
TASK_DELIVER_BATCH = "relay.deliver_batch"
TASK_SWEEP = "relay.sweep"
TASK_SEND_SCHEDULED = "relay.send_scheduled"
TASK_FETCH_MEDIA = "relay.fetch_media"
TASK_SEND_DIGESTS = "relay.send_digests"  # issue 5
TASK_DRAIN_INBOUND = "relay.drain_inbound"  # every stored webhook waiting, in batches

QUEUE_INBOUND = "inbound"
QUEUE_OUTBOUND = "outbound"  # one delivery a task: relayed replies, confirmations, retries
QUEUE_BULK = "bulk"  # batches of a broadcast: a big one never holds up the outbound queue
QUEUE_MAINTENANCE = "maintenance"

TASK_QUEUES = {
    TASK_PROCESS_INBOUND: QUEUE_INBOUND,
    TASK_APPLY_STATUS: QUEUE_INBOUND,
    TASK_DELIVER: QUEUE_OUTBOUND,
    TASK_DELIVER_BATCH: QUEUE_BULK,
    TASK_SWEEP: QUEUE_MAINTENANCE,
    TASK_SEND_SCHEDULED: QUEUE_MAINTENANCE,
    TASK_FETCH_MEDIA: QUEUE_INBOUND,
    TASK_SEND_DIGESTS: QUEUE_MAINTENANCE,
    TASK_DRAIN_INBOUND: QUEUE_INBOUND,
}


class Dispatcher(Protocol):
    def inbound_received(self, event_id: int, kind: str) -> None:
        """A webhook was just stored: have it (and whatever else waits) processed soon."""

    def process_inbound(self, event_id: int) -> None: ...

    def apply_status(self, event_id: int) -> None: ...

    def deliver(self, delivery_ids: Sequence[int], countdown: float | None = None) -> None: ...

    def fetch_media(self, image_id: int) -> None: ...

    def deliver_batches(self, batches: Iterable[Sequence[int]], queue: str = QUEUE_BULK) -> int: ...

    def warm(self) -> None:
        """Load now what the first dispatch would load (optional: warm_quietly skips a dispatcher without it)."""


class CeleryDispatcher:
    """Publishes tasks by name, so the web process needs no task code, only the broker.

    With a doorbell (a Redis broker), a stored webhook costs one Redis round trip: only the ring
    that finds the bell silent publishes a drain task (relay/infra/doorbell.py). Without one (the
    embedded broker), each webhook gets its own task."""

    def __init__(self, celery_app, doorbell=None):
        self.app = celery_app
        self.doorbell = doorbell

    def _send(self, name: str, args: list, countdown: float | None = None) -> None:
        self.app.send_task(name, args=args, queue=TASK_QUEUES[name], countdown=countdown)

    def inbound_received(self, event_id: int, kind: str) -> None:
        if self.doorbell is None:
            self._send(TASK_APPLY_STATUS if kind == "status" else TASK_PROCESS_INBOUND, [event_id])
            return
        if self.doorbell.ring():
            try:
                self.drain_inbound()
            except Exception:
                self.doorbell.silence()  # the next webhook rings again (the sweeper backs this up)
                raise

    def drain_inbound(self) -> None:
        self._send(TASK_DRAIN_INBOUND, [])

    def process_inbound(self, event_id: int) -> None:
        self._send(TASK_PROCESS_INBOUND, [event_id])

    def apply_status(self, event_id: int) -> None:
        self._send(TASK_APPLY_STATUS, [event_id])

    def fetch_media(self, image_id: int) -> None:
        self._send(TASK_FETCH_MEDIA, [image_id])

    def deliver(self, delivery_ids: Sequence[int], countdown: float | None = None) -> None:
        if not delivery_ids:
            return
        with self.app.producer_or_acquire() as producer:  # one connection for the whole batch
            for delivery_id in delivery_ids:
                self.app.send_task(TASK_DELIVER, args=[delivery_id], queue=QUEUE_OUTBOUND,
                                   countdown=countdown, producer=producer)

    def deliver_batches(self, batches: Iterable[Sequence[int]], queue: str = QUEUE_BULK) -> int:
        """One bulk task per batch of delivery ids, all published over one producer connection, on the bulk
        queue (a broadcast's) or, for the relays of a drained batch of replies, on the outbound queue."""
        count = 0
        with self.app.producer_or_acquire() as producer:
            for ids in batches:
                ids = list(ids)
                self.app.send_task(TASK_DELIVER_BATCH, args=[ids], queue=queue, producer=producer,
                                   argsrepr=batch_argsrepr(ids))
                count += 1
        return count

    def warm(self) -> None:
        """Load what a process's first publish loads: Celery's publishing side (celery.app.amqp), the
        broker's transport and the producer pool, ~100 ms of CPU on this machine, which a new web worker's
        first drain task or first broadcast batch waited for (issue 18, docs/scale.md). Called as a process
        starts (webhooks/app.py warm_up, the workers' warm-up). Publishes nothing and opens no connection."""
        with self.app.producer_or_acquire():
            pass


def warm_quietly(dispatcher) -> None:
    """dispatcher.warm(), if it has one; a failure is only logged: the first dispatch loads it then."""
    warm = getattr(dispatcher, "warm", None)
    if warm is None:
        return
    try:
        warm()
    except Exception as exc:
        log.warning("warming the dispatcher: %s: %s (the first dispatch loads it)", type(exc).__name__, exc)


def batch_argsrepr(ids: Sequence[int]) -> str:
    """What a bulk task's message shows of its arguments (its `argsrepr` header, which the worker's log and
    monitoring read): the first and last ids and how many. Left to Celery, `saferepr` walks every id of every
    batch as it is published, only to cut the text at 1,024 characters (~1 ms of the sender's CPU per batch of
    250: 55 ms of a 10,000-member notice's planning, docs/scale.md)."""
    if len(ids) <= 2:
        return repr([list(ids)])
    return f"[[{ids[0]}, ..., {ids[-1]}]] ({len(ids)} delivery ids)"


class RecordingDispatcher:
    """Keeps what was dispatched in lists; tests then run the core functions themselves."""

    def __init__(self):
        self.inbound: list[int] = []
        self.statuses: list[int] = []
        self.deliveries: list[int] = []
        self.media: list[int] = []
        self.batches: list[list[int]] = []
        self.batch_queues: list[str] = []  # the queue each batch went to
        self.fail = False

    def _check(self):
        if self.fail:
            raise ConnectionError("broker unavailable (test)")

    def inbound_received(self, event_id: int, kind: str) -> None:
        """Recorded as if queued one by one: a test's worker processes these lists itself."""
        if kind == "status":
            self.apply_status(event_id)
        else:
            self.process_inbound(event_id)

    def process_inbound(self, event_id: int) -> None:
        self._check()
        self.inbound.append(event_id)

    def apply_status(self, event_id: int) -> None:
        self._check()
        self.statuses.append(event_id)

    def deliver(self, delivery_ids: Sequence[int], countdown: float | None = None) -> None:
        self._check()
        self.deliveries.extend(delivery_ids)

    def fetch_media(self, image_id: int) -> None:
        self._check()
        self.media.append(image_id)

    def deliver_batches(self, batches: Iterable[Sequence[int]], queue: str = QUEUE_BULK) -> int:
        """Batches are kept, and their ids also land in `deliveries`, so a test's run_worker sends them
        one by one with send_delivery (bulk_send.send_batch is tested on its own)."""
        count = 0
        for ids in batches:
            self._check()
            self.batches.append(list(ids))
            self.batch_queues.append(queue)
            self.deliveries.extend(ids)
            count += 1
        return count


def celery_config(settings) -> dict:
    """Celery settings shared by the producer (web) and the workers."""
    config = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,  # a task is acknowledged after it ran: a killed worker's task is redelivered
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 4,
        # A pool process has this long to start (its warm-up, workers/tasks.py: the provider clients, a batch's
        # statements against the database, the notice emails) before Celery kills it as hung; Celery's 4 s was
        # less than the database's own connect timeout (relay/infra/db.py) on a database that does not answer.
        "worker_proc_alive_timeout": 30.0,
        "task_default_queue": QUEUE_INBOUND,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "broker_connection_retry_on_startup": True,
        # a worker reconnects to a lost broker forever (kombu backs off 2 s, 4 s ... 30 s and Celery logs
        # each try), instead of exiting after 100 attempts (Celery's default)
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 3,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                      "interval_max": 0.5},
        "worker_hijack_root_logger": False,
        "enable_utc": True,
    }
    if settings.embedded_broker:
        queue_dir = settings.broker_dir / "queue"
        processed_dir = settings.broker_dir / "processed"
        control_dir = settings.broker_dir / "control"
        for directory in (queue_dir, processed_dir, control_dir):
            directory.mkdir(parents=True, exist_ok=True)
        config["broker_transport"] = "relay.infra.broker_files:Transport"  # kombu's, write races closed
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "control_folder": str(control_dir),
            "polling_interval": 0.2,  # a local directory: cheap to look at often
            "store_processed": False,
        }
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        options = {"visibility_timeout": 3600}
        if settings.broker_prefix:  # several deployments (or test runs) sharing one Redis
            options["global_keyprefix"] = settings.broker_prefix
        config["broker_transport_options"] = options
    return config


def dispatch_safely(action, *args, **kwargs) -> bool:
    """Dispatch, but never let a broker outage undo committed work; the sweeper retries later."""
    try:
        action(*args, **kwargs)
        return True
    except Exception as exc:  # broker down, network error: logged, recovered by the sweeper
        log.warning("dispatch failed, the sweeper will retry: %s: %s", type(exc).__name__, exc)
        return False
