"""gunicorn's access log without secrets: `relay web` runs gunicorn with this logger class, so a line
never records a signed token (/unsubscribe/<token>, /preferences/<token>, /digest/confirm/<token>),
SendGrid's path secret, a ?token=, a phone number or an address in a path, nor credentials in
headers, whatever access-log format a deployer sets (docs/privacy.md)."""
from __future__ import annotations

import functools

from gunicorn.glogging import Logger

from relay.infra.logs import REDACTED, redact_path, redact_query

# atoms that hold a request path or URI (gunicorn's own and their environ/header forms)
URL_ATOMS = frozenset({"U", "f", "{raw_uri}e", "{path_info}e", "{request_uri}e", "{http_referer}e",
                       "{referer}i", "{script_name}e"})
QUERY_ATOMS = frozenset({"q", "{query_string}e"})
# header, environ and response atoms whose names say they carry a credential
SECRET_WORDS = ("authorization", "cookie", "signature", "token", "secret", "password", "api-key", "api_key")


@functools.lru_cache(maxsize=512)
def _kind(key: str) -> str:
    """How an atom is treated: request line, url, query, secret or as is (atom names repeat: cached)."""
    if key == "r":
        return "line"
    if key in URL_ATOMS:
        return "url"
    if key in QUERY_ATOMS:
        return "query"
    if key.startswith("{") and any(word in key.lower() for word in SECRET_WORDS):
        return "secret"
    return ""


def redact_atoms(atoms: dict) -> dict:
    """gunicorn's access-log atoms with every path, query, referer and credential made safe."""
    safe = dict(atoms)
    done: dict[str, str] = {}  # the same path appears in several atoms: redacted once

    def path(value: str) -> str:
        if value not in done:
            done[value] = redact_path(value)
        return done[value]

    for key, value in atoms.items():
        kind = _kind(key)
        if not kind or not isinstance(value, str):
            continue
        if kind == "line":  # METHOD URI PROTOCOL
            method, _, rest = value.partition(" ")
            uri, space, protocol = rest.rpartition(" ") if " " in rest else (rest, "", "")
            safe[key] = f"{method} {path(uri)}{space}{protocol}"
        elif kind == "url":
            safe[key] = path(value)
        elif kind == "query":
            safe[key] = redact_query(value)
        else:
            safe[key] = REDACTED
    if safe.get("u") not in (None, "-"):
        safe["u"] = REDACTED  # a basic-auth user name (Postmark's webhook credentials)
    return safe


class RedactingLogger(Logger):
    """gunicorn's logger, its access-log atoms redacted (gunicorn --logger-class)."""

    def atoms(self, resp, req, environ, request_time):
        return redact_atoms(super().atoms(resp, req, environ, request_time))
