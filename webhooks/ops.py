"""Operations: /healthz (database, broker, and the spool when not empty), /metrics (Prometheus),
/dev/outbox (dev mode)."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, jsonify, render_template
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from relay.metrics import render_metrics
from relay.providers.outbox import OutboxSender, read_outbox

log = logging.getLogger("relay.web.ops")
blueprint = Blueprint("ops", __name__)


def _check_broker(services) -> str:
    dispatcher = services.dispatcher
    app = getattr(dispatcher, "app", None)
    if app is None:
        return "ok"
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


@blueprint.get("/healthz")
def healthz():
    services = current_app.extensions["relay"]
    checks, healthy = {}, True
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
        healthy = False
    try:
        checks["broker"] = _check_broker(services)
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
        healthy = False
    status = "ok" if healthy else "unavailable"
    spool = services.spool.depth() if services.spool is not None else None
    if spool is not None and spool.files:  # webhooks wait for the database: answered, not yet stored
        checks["spool"] = {"files": spool.files, "bytes": spool.bytes, "oldest_seconds": round(spool.oldest_seconds)}
        if healthy:
            status = "degraded"
            services.replayer.start()  # the database answers: store them now
    if not healthy:
        log.warning("health check failed: %s", checks)
    elif status == "degraded":
        log.warning("health check: %d webhooks wait in the spool", spool.files)
    return jsonify(status=status, checks=checks), (200 if healthy else 503)


@blueprint.get("/metrics")
def metrics():
    services = current_app.extensions["relay"]
    return Response(render_metrics(services.sessions, services.spool), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/dev/outbox")
def dev_outbox():
    services = current_app.extensions["relay"]
    if not any(isinstance(s, OutboxSender) for s in services.senders.values()):
        abort(404, "the dev outbox is off: messages go to the configured providers")
    messages = read_outbox(services.settings.outbox_dir)
    return render_template("outbox.html", messages=messages, directory=services.settings.outbox_dir)
