"""The answers to a database outage and to HTTP errors, the same from Flask (webhooks/app.py) and from
the WSGI fast path ahead of it (webhooks/fast_path.py)."""
from __future__ import annotations

import logging

from flask import Response, render_template
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from relay.infra.logs import mask_text, redact_path

log = logging.getLogger("relay.web")  # the web app's logger (webhooks/app.py), as before


def database_unavailable_response(request, exc: DBAPIError) -> Response:
    """Never a 200 for something not kept durably: a Twilio webhook the database could not take is
    spooled instead (webhooks/twilio.py); this 503 is for everything else, or a full spool."""
    log.error("database unavailable for %s %s: %s", request.method, redact_path(request.path),
              str(exc).splitlines()[0])
    return Response("database unavailable, try again later\n", status=503, mimetype="text/plain",
                    headers={"Retry-After": "30"})


def log_http_error(request, exc: HTTPException) -> None:
    if exc.code and exc.code >= 500:
        log.error("%s %s: %s", request.method, redact_path(request.path), mask_text(exc))
    elif exc.code not in (404, 405):
        log.warning("%s %s: %s %s", request.method, redact_path(request.path), exc.code, mask_text(exc.description))


def http_error_response(request, exc: HTTPException) -> Response:
    log_http_error(request, exc)
    return Response(f"{exc.code} {exc.name}: {exc.description}\n", status=exc.code, mimetype="text/plain")


def error_page(request, exc: HTTPException) -> Response | tuple[str, int]:
    """An HTTP error a person reads (a library, console or preference page): a page in the reader's language
    (issue 21), with the language switch; plain text if even that page cannot be drawn."""
    from .i18n import http_error_words  # the language machinery needs the app; errors.py is also the fast path's

    log_http_error(request, exc)
    try:
        title, message = http_error_words(exc)
        page = render_template("error.html", title=title, message=message, code=exc.code, error_page=True)
    except Exception:  # a page that fails to draw (the database gone mid-request) must not hide the answer
        log.exception("error page for %s %s", request.method, redact_path(request.path))
        return Response(f"{exc.code} {exc.name}: {exc.description}\n", status=exc.code, mimetype="text/plain")
    response = Response(page, status=exc.code, mimetype="text/html")
    for name, value in exc.get_headers():
        if name in ("Allow", "Retry-After"):  # 405 and 429 say what to do next
            response.headers[name] = value
    return response
