"""Operations: /healthz (database, broker, and the spool when not empty), /metrics (Prometheus),
/dev/outbox (dev mode).

The dev outbox shows members' numbers, addresses and clinical text: it is served only with
RELAY_DEV_OUTBOX=on (refused at start on an https base) and only to a signed-in admin."""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from relay.infra.metrics import DatabaseCounts, render_metrics
from relay.providers.outbox import read_outbox

from .auth import requires
from .i18n import refuse

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


def _bearer_ok(expected: str) -> bool:
    """Constant-time check of "Authorization: Bearer <token>" against `expected`."""
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@blueprint.get("/metrics")
def metrics():
    services = current_app.extensions["relay"]
    settings = services.settings
    if settings.metrics_token and not _bearer_ok(settings.metrics_token):
        log.warning("/metrics refused from %s: missing or wrong bearer token", request.remote_addr)
        return Response("401 Unauthorized: /metrics needs its bearer token (RELAY_METRICS_TOKEN)\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="relay metrics"'})
    counts = current_app.extensions.get("relay-metrics-counts")
    if counts is None:
        counts = current_app.extensions.setdefault(
            "relay-metrics-counts", DatabaseCounts(services.sessions, ttl=settings.metrics_cache_seconds))
    return Response(render_metrics(services.sessions, services.spool, counts), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/dev/outbox")
def dev_outbox():
    if not current_app.extensions["relay"].settings.dev_outbox:
        refuse(404, _("the dev outbox is off (RELAY_DEV_OUTBOX)"))
    return _dev_outbox_page()


@requires("outbox.read")
def _dev_outbox_page():
    services = current_app.extensions["relay"]
    messages = read_outbox(services.settings.outbox_dir)
    return render_template("outbox.html", messages=messages, directory=services.settings.outbox_dir)
