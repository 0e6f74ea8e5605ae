"""The access log of `relay web --server granian`: one line a request, in gunicorn's default format, with
every path, query, referer and credential redacted by the same rules as gunicorn's (relay/infra/access_log.py).

Written in the app because granian's own access log writes the raw path, and a path can hold a signed token
(/unsubscribe/<token>) or a phone number (docs/privacy.md). The line goes to stdout, as gunicorn's does,
whatever RELAY_LOG_LEVEL says: an access log is not a debug log."""
from __future__ import annotations

import logging
import sys
import time
from urllib.parse import quote

from relay.infra.access_log import redact_atoms

# gunicorn's default access_log_format, so both servers' lines read alike
FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
_SAFE = "/:@!$&'()*+,;=-._~%"  # what a path keeps unquoted (RFC 3986 pchar, and existing escapes)


def access_logger() -> logging.Logger:
    """relay.access: its own stdout handler at INFO, not propagated to the root's stderr."""
    log = logging.getLogger("relay.access")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def access_line(environ: dict, status: str, headers: list[tuple[str, str]]) -> str:
    """The redacted line for one request and its answer."""
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
    uri = quote(path, safe=_SAFE) + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
    length = next((value for name, value in headers if name.lower() == "content-length"), "-")
    auth = environ.get("HTTP_AUTHORIZATION", "")
    atoms = {"h": environ.get("REMOTE_ADDR") or "-", "l": "-",
             "u": "[redacted]" if auth.lower().startswith("basic ") else "-",
             "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
             "r": f"{environ.get('REQUEST_METHOD', '-')} {uri} {environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}",
             "s": status.split(" ", 1)[0] if status else "-", "b": length,
             "f": environ.get("HTTP_REFERER") or "-", "a": environ.get("HTTP_USER_AGENT") or "-"}
    return FORMAT % redact_atoms(atoms)


class AccessLog:
    """WSGI middleware: the app's answer, then its access line (the status as the app gave it)."""

    def __init__(self, app, log: logging.Logger | None = None):
        self.app = app
        self.log = log or access_logger()

    def __call__(self, environ, start_response):
        answer: dict = {}

        def recording(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording)
        finally:
            self.log.info(access_line(environ, answer.get("status", ""), answer.get("headers", [])))
