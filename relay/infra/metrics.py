"""Prometheus metrics.

Counts that must agree across every web and worker process (inbound, relayed, deliveries by
status) are read from the database at scrape time. Per-process timings (webhook handling, task
latency) are prometheus_client metrics; with PROMETHEUS_MULTIPROC_DIR set (as `relay up` and
`relay worker` do) the web's /metrics adds up every process on the host, and
`relay worker --metrics-port` serves a worker host's own figures. The web caches the database counts
for RELAY_METRICS_CACHE_SECONDS, and /metrics needs RELAY_METRICS_TOKEN as a bearer token when set."""
from __future__ import annotations

import os
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from relay.model.tables import Delivery, HeldMessage, InboundEvent, Post

WEBHOOKS = Counter("relay_webhook_requests", "Webhook requests by kind and result", ["kind", "result"])
TASK_SECONDS = Histogram("relay_task_seconds", "Time a task took to run", ["task"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
INBOUND_LATENCY = Histogram("relay_inbound_latency_seconds",
                            "From webhook received to inbound message processed",
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
# issue 16: the patient-information guard's verdicts in this process (pass | hold | warn | off); the kinds
# found are counted from the database (relay_guard_findings, below), the same whichever process is asked
GUARD_VERDICTS = Counter("relay_guard_verdicts", "Patient-information guard verdicts", ["verdict"])


class DatabaseCounts:
    """The business counts, queried at most once per `ttl` seconds in this process: a scrape (or
    someone hammering /metrics) costs three GROUP BY queries over the biggest tables otherwise."""

    def __init__(self, sessions, ttl: float = 5, clock=time.monotonic):
        self.sessions, self.ttl, self.clock = sessions, ttl, clock
        self._rows: tuple | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        self.guard: tuple = ((), (), ())  # (verdicts, kinds, held by status), read with the rows

    def rows(self) -> tuple:
        """(inbound, posts, deliveries) rows, fresh or at most `ttl` seconds old."""
        with self._lock:
            now = self.clock()
            if self._rows is None or now - self._at >= self.ttl:
                self._rows, self._at = self._query(), now
            return self._rows

    def _query(self) -> tuple:
        with self.sessions() as session:
            inbound = session.execute(select(InboundEvent.kind, InboundEvent.outcome, func.count())
                                      .group_by(InboundEvent.kind, InboundEvent.outcome)).all()
            posts = session.execute(select(Post.channel, Post.kind, func.count())
                                    .group_by(Post.channel, Post.kind)).all()
            deliveries = session.execute(select(Delivery.channel, Delivery.purpose, Delivery.status, func.count())
                                         .group_by(Delivery.channel, Delivery.purpose, Delivery.status)).all()
            # issue 16: the guard's verdicts and the kinds it found (few rows: only messages with a finding)
            verdicts = session.execute(select(InboundEvent.guard_verdict, func.count())
                                       .where(InboundEvent.guard_verdict != "")
                                       .group_by(InboundEvent.guard_verdict)).all()
            kinds: dict[str, int] = {}
            for found in session.scalars(select(InboundEvent.guard_kinds)
                                         .where(InboundEvent.guard_verdict.in_(("hold", "warn")))):
                for kind in found or []:
                    kinds[kind] = kinds.get(kind, 0) + 1
            held = session.execute(select(HeldMessage.status, func.count()).group_by(HeldMessage.status)).all()
        self.guard = (verdicts, sorted(kinds.items()), held)
        return inbound, posts, deliveries


class DatabaseCollector:
    """Business counts straight from the database, the same whoever is asked."""

    def __init__(self, sessions, counts: DatabaseCounts | None = None):
        self.counts = counts or DatabaseCounts(sessions, ttl=0)

    def collect(self):
        inbound, posts, deliveries = self.counts.rows()
        family: GaugeMetricFamily | CounterMetricFamily = GaugeMetricFamily("relay_inbound_events", "Inbound webhooks kept, by kind and current outcome",
                                   labels=["kind", "outcome"])
        for kind, outcome, count in inbound:
            family.add_metric([kind, outcome or ""], count)
        yield family
        family = CounterMetricFamily("relay_posts", "Posts in case discussions", labels=["channel", "kind"])
        for channel, kind, count in posts:
            family.add_metric([channel, kind], count)
        yield family
        family = GaugeMetricFamily("relay_deliveries", "Deliveries by channel, purpose and status",
                                   labels=["channel", "purpose", "status"])
        relayed = 0
        for channel, purpose, status, count in deliveries:
            family.add_metric([channel, purpose, status], count)
            if purpose == "relay":
                relayed += count
        yield family
        family = CounterMetricFamily("relay_relayed_messages", "Posts relayed to participants (deliveries)")
        family.add_metric([], relayed)
        yield family
        verdicts, kinds, held = self.counts.guard
        family = GaugeMetricFamily("relay_guard_messages", "Inbound messages by the patient-information guard's "
                                   "verdict (pass | hold | warn | off)", labels=["verdict"])
        for verdict, count in verdicts:
            family.add_metric([verdict], count)
        yield family
        family = GaugeMetricFamily("relay_guard_findings", "Inbound messages held or warned, by kind of identifier",
                                   labels=["kind"])
        for kind, count in kinds:
            family.add_metric([kind], count)
        yield family
        family = GaugeMetricFamily("relay_held_messages", "Held messages by status (held | released | dropped | "
                                   "expired)", labels=["status"])
        for status, count in held:
            family.add_metric([status], count)
        yield family


class SpoolCollector:
    """The spool's depth (relay/infra/spool.py), read from the directory at scrape time."""

    def __init__(self, spool):
        self.spool = spool

    def collect(self):
        depth = self.spool.depth()
        for name, help_text, value in (
                ("relay_spool_files", "Webhooks kept in the local spool, waiting for the database", depth.files),
                ("relay_spool_bytes", "Bytes in the local spool", depth.bytes),
                ("relay_spool_oldest_seconds", "Age of the oldest webhook in the spool (0 when empty)",
                 depth.oldest_seconds)):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            yield family


def render_metrics(sessions, spool=None, counts: DatabaseCounts | None = None) -> bytes:
    registry = CollectorRegistry()
    if spool is not None:
        registry.register(SpoolCollector(spool))
    registry.register(DatabaseCollector(sessions, counts))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # reason: only in multi-process mode (gunicorn workers)

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (WEBHOOKS, TASK_SECONDS, INBOUND_LATENCY, GUARD_VERDICTS):
            registry.register(_Borrowed(collector))
    return generate_latest(registry)


class _Borrowed:
    """Expose a metric of the default registry inside another registry."""

    def __init__(self, metric):
        self.metric = metric

    def collect(self):
        return self.metric.collect()
