"""gunicorn's hooks for `relay web` (a config module: relay/cli/common.gunicorn_options passes
`--config python:webhooks.serving`; the ingest benchmark's bare handler runs with the same settings).

post_worker_init: once a worker has loaded the app, it opens the connections a webhook uses (the kept insert
connection, only for a sync worker, whose one thread serves every request; the doorbell's Redis:
webhooks/app.py warm_up), so the first webhooks do not wait for them; then everything alive (modules, the
app, settings, templates: the process's long-lived objects) goes into the collector's permanent generation
(gc.freeze), so the full collections that a stream of webhooks triggers now and then no longer walk
all of it, a pause in the latency tail of whichever webhook set it off (docs/scale.md, "What a
webhook costs at the edge"). Nothing is frozen before the fork: gunicorn loads the app in each
worker, after it."""
from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    from webhooks.app import warm_up  # reason: this module is gunicorn's config, loaded in the arbiter too

    app = getattr(worker, "wsgi", None)
    if hasattr(app, "extensions"):  # a Flask app (relay's, or the bench's bare handler)
        # the insert connection is kept per thread: a gthread worker's requests run on other threads than this
        warm_up(app, database=getattr(worker.cfg, "threads", 1) <= 1)
    gc.collect()
    gc.freeze()
