"""Tasks, each a few lines over a relay/ function. Tasks take ids, are acknowledged late, and
are idempotent: the core re-reads state and skips what is already done."""
from __future__ import annotations

import gc
import logging
import os
import time
from contextlib import contextmanager

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import configure_mappers

from relay.digests.building import run_digests
from relay.inbound.drain import BUDGET as DRAIN_BUDGET
from relay.inbound.drain import drain as run_drain
from relay.inbound.mms import fetch_case_image
from relay.inbound.sms import process_inbound as run_process_inbound
from relay.inbound.spool_replay import replay_spool
from relay.inbound.statuses import apply_status as run_apply_status
from relay.infra.dispatch import (
    TASK_APPLY_STATUS,
    TASK_DELIVER,
    TASK_DELIVER_BATCH,
    TASK_DRAIN_INBOUND,
    TASK_FETCH_MEDIA,
    TASK_PROCESS_INBOUND,
    TASK_SEND_DIGESTS,
    TASK_SEND_SCHEDULED,
    TASK_SWEEP,
    CeleryDispatcher,
    dispatch_safely,
    warm_quietly,
)
from relay.infra.doorbell import LINGER_SECONDS
from relay.infra.metrics import TASK_SECONDS
from relay.infra.settings import Settings
from relay.notices.lifecycle import send_scheduled as run_send_scheduled
from relay.outbound import warming
from relay.outbound.bulk import send_batch
from relay.outbound.sending import send_delivery
from relay.services import Services, build_services, make_doorbell
from relay.sweeper import sweep as run_sweep

log = logging.getLogger("relay.worker")

# The collector's youngest generation is collected after this many new container objects, not 700: a batch
# of a broadcast makes and drops tens of thousands (ORM rows, coroutines, responses), almost none of them in
# cycles, so at 700 most young collections found nothing to free (~1.8 % of a batch's CPU, issue 18;
# docs/scale.md). The older generations keep their thresholds; what is loaded at start is frozen (warm_up).
YOUNG_COLLECTION_THRESHOLD = 20_000


class ServicesHolder:
    """Services built lazily in each worker process (again after a fork)."""

    def __init__(self, app: Celery, settings: Settings):
        self.app, self.settings = app, settings
        self._services: Services | None = None
        self._pid: int | None = None

    def get(self) -> Services:
        if self._services is None or self._pid != os.getpid():
            dispatcher = CeleryDispatcher(self.app, doorbell=make_doorbell(self.settings))
            self._services = build_services(self.settings, dispatcher=dispatcher)
            self._pid = os.getpid()
        return self._services

    def reset(self, **_kwargs) -> None:
        self._services = None


@contextmanager
def _timed(task: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        TASK_SECONDS.labels(task=task).observe(time.perf_counter() - started)


def _database_retry(task, exc: DBAPIError):
    """The database is down: retry with backoff until it is back (the task is kept, not lost)."""
    delay = min(60, 2 ** min(task.request.retries, 6))
    log.warning("%s: database unavailable (%s), retrying in %ss", task.name, type(exc).__name__, delay)
    return task.retry(exc=exc, countdown=delay, max_retries=None)


def _run(task, name: str, function, *args):
    """Run a core function, timed; while the database is down, retry instead of failing."""
    try:
        with _timed(name):
            return function(*args)
    except DBAPIError as exc:
        raise _database_retry(task, exc) from exc


def register_tasks(app: Celery, settings: Settings) -> None:
    # shared=False: these tasks close over this app's services; Celery's default (shared) would also
    # attach them to any later app in the process (a second app in tests), with the wrong services.
    holder = ServicesHolder(app, settings)
    def warm_up(**_kwargs) -> None:
        """A new pool process builds its services, configures the ORM's mappers and loads the provider clients
        before its first task, so the first batch of a broadcast is not held up by them (twilio's REST client),
        and runs a batch's statements and renders the notice emails once (relay/outbound/warming.py).
        Then what it has loaded goes into the collector's permanent generation (gc.freeze, as the web's workers
        do: webhooks/serving.py): a broadcast's batches set off full collections now and then, and each walked
        all of it (~170 ms each, ~6 % of a 12,000-message broadcast's CPU in one process; docs/scale.md)."""
        holder.reset()
        try:
            configure_mappers()
            for sender in holder.get().senders.values():
                if hasattr(sender, "warm_up"):
                    sender.warm_up()
            warming.warm_up(holder.get())  # a broadcast's first batch: its statements and templates (relay/outbound/warming.py)
            warm_quietly(holder.get().dispatcher)  # its producer: what the first relay, retry or fallback publishes
        except Exception as exc:  # the first task will try again, and say why
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])

    worker_process_init.connect(warm_up, weak=False)
    app.relay_services = holder  # type: ignore[attr-defined]

    @app.task(name=TASK_PROCESS_INBOUND, bind=True, shared=False)
    def process_inbound(self, event_id: int) -> str:
        return _run(self, "process_inbound", run_process_inbound, holder.get(), event_id).outcome

    @app.task(name=TASK_DRAIN_INBOUND, bind=True, shared=False)
    def drain_inbound(self) -> dict:
        """Process every stored webhook waiting (relay/inbound/drain.py), rung by the doorbell."""
        services = holder.get()
        dispatcher = services.dispatcher
        doorbell = dispatcher.doorbell
        if doorbell is not None:
            try:  # before the first claim: whatever is stored from now on rings for a new task
                doorbell.silence()
            except Exception as exc:  # the bell's TTL silences it anyway
                log.warning("drain: could not silence the doorbell: %s: %s", type(exc).__name__, exc)

        def start_a_helper() -> None:  # more waiting than one batch: one more drainer, at most every 2 s
            if doorbell is not None:
                dispatch_safely(lambda: doorbell.claim_helper_slot() and dispatcher.drain_inbound())

        linger = LINGER_SECONDS if doorbell is not None else 0.0  # rings are coalesced only with a doorbell
        report = _run(self, "drain_inbound", run_drain, services, DRAIN_BUDGET, start_a_helper, linger)
        if report.more:  # the budget is spent: a fresh task goes on, behind whatever else is queued
            dispatch_safely(dispatcher.drain_inbound)
        return report.__dict__

    @app.task(name=TASK_APPLY_STATUS, bind=True, shared=False)
    def apply_status(self, event_id: int) -> str:
        return _run(self, "apply_status", run_apply_status, holder.get(), event_id)

    @app.task(name=TASK_DELIVER, bind=True, shared=False)
    def deliver(self, delivery_id: int) -> str:
        return _run(self, "deliver", send_delivery, holder.get(), delivery_id).result

    @app.task(name=TASK_FETCH_MEDIA, bind=True, shared=False)
    def fetch_media(self, image_id: int) -> str:
        """Fetch one MMS picture; while attempts remain, a failed fetch comes back after a backoff."""
        result = _run(self, "fetch_media", fetch_case_image, holder.get(), image_id)
        if result.retry_in is not None:
            raise self.retry(countdown=result.retry_in, max_retries=None)
        return result.status

    @app.task(name=TASK_DELIVER_BATCH, bind=True, shared=False)
    def deliver_batch(self, delivery_ids: list[int]) -> dict:
        report = _run(self, "deliver_batch", send_batch, holder.get(), delivery_ids)
        return {"sent": report.sent, "skipped": report.skipped, "retry": report.retry, "deferred": report.deferred,
                "failed": report.failed}

    @app.task(name=TASK_SWEEP, bind=True, shared=False)
    def sweep(self) -> dict:
        try:
            with _timed("sweep"):
                replay_spool(holder.get())  # webhooks the web kept while the database was down (same host)
                return run_sweep(holder.get()).__dict__
        except DBAPIError as exc:  # the next beat tick tries again
            log.warning("sweep skipped: database unavailable (%s)", type(exc).__name__)
            return {}

    @app.task(name=TASK_SEND_SCHEDULED, bind=True, shared=False)
    def send_scheduled(self) -> list:
        try:
            with _timed("send_scheduled"):
                return [r.notice_id for r in run_send_scheduled(holder.get())]
        except DBAPIError as exc:  # the next beat tick tries again; a claimed notice rolled back stays scheduled
            log.warning("scheduled notices skipped: database unavailable (%s)", type(exc).__name__)
            return []

    @app.task(name=TASK_SEND_DIGESTS, bind=True, shared=False)
    def send_digests(self) -> int:
        """issue 5: digests due at this quarter hour; the UNIQUE (subscription, period) row makes a
        retry or a second beat process harmless."""
        try:
            with _timed("send_digests"):
                return run_digests(holder.get()).sent
        except DBAPIError as exc:  # the next beat tick tries again
            log.warning("digests skipped: database unavailable (%s)", type(exc).__name__)
            return 0
