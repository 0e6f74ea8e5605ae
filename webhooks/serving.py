"""How `relay web` serves the app: gunicorn's hooks (a config module: relay/cli/common.gunicorn_options passes
`--config python:webhooks.serving`; the ingest benchmark's bare handler runs with the same settings), and
granian's app factory (`relay web`'s default server: relay/cli/common.granian_options), which does the same
once the app is loaded in a worker and adds the redacted access log (webhooks/access_log.py).

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
    app = getattr(worker, "wsgi", None)
    # the insert connection is kept per thread: a gthread worker's requests run on other threads than this
    _ready(app, database=getattr(getattr(worker, "cfg", None), "threads", 1) <= 1)


def granian_app(app=None):
    """granian's factory (`--factory webhooks.serving:granian_app`), called in each worker process: the app
    with its access log, warmed up and frozen as gunicorn's post_worker_init does. Requests run on granian's
    blocking threads, not this one, so the kept insert connection (per thread) is left to the first webhook
    of each. `app`: an app already built (tests); else the serving app, from the environment."""
    from webhooks.access_log import AccessLog
    from webhooks.app import create_app  # reason: the app is built in the worker, as with gunicorn

    app = app if app is not None else create_app()
    app.wsgi_app = AccessLog(app.wsgi_app)
    _ready(app, database=False)
    return app


def _ready(app, database: bool) -> None:
    """A worker's app is loaded: open what its first webhook would (webhooks/app.py warm_up), then move what is
    alive into the collector's permanent generation, in that order (the connections opened are frozen too)."""
    from webhooks.app import warm_up  # reason: this module is gunicorn's config, loaded in the arbiter too

    if hasattr(app, "extensions"):  # a Flask app (relay's, or the bench's bare handler)
        warm_up(app, database=database)
    gc.collect()
    gc.freeze()
