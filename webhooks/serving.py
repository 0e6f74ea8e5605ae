"""gunicorn's hooks for `relay web` (a config module: relay/cli/common.gunicorn_options passes
`--config python:webhooks.serving`; the ingest benchmark's bare handler runs with the same settings).

post_worker_init: once a worker has loaded the app, everything alive then (modules, the app, settings,
templates: the process's long-lived objects) goes into the collector's permanent generation
(gc.freeze), so the full collections that a stream of webhooks triggers now and then no longer walk
all of it, a pause in the latency tail of whichever webhook set it off (docs/scale.md, "What a
webhook costs at the edge"). Nothing is frozen before the fork: gunicorn loads the app in each
worker, after it."""
from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    gc.collect()
    gc.freeze()
