"""gunicorn's access log without secrets: `relay web` runs gunicorn with this logger class, so a line
never records a signed token (/unsubscribe/<token>, /preferences/<token>, /digest/confirm/<token>),
SendGrid's path secret, a ?token=, a phone number or an address in a path, nor credentials in
headers, whatever access-log format a deployer sets (docs/privacy.md)."""
from __future__ import annotations

from gunicorn.glogging import Logger

from .logs import REDACTED, redact_path, redact_query

# atoms that hold a request path or URI (gunicorn's own and their environ/header forms)
URL_ATOMS = frozenset({"U", "f", "{raw_uri}e", "{path_info}e", "{request_uri}e", "{http_referer}e",
                       "{referer}i", "{script_name}e"})
QUERY_ATOMS = frozenset({"q", "{query_string}e"})
# header, environ and response atoms whose names say they carry a credential
SECRET_WORDS = ("authorization", "cookie", "signature", "token", "secret", "password", "api-key", "api_key")


def redact_atoms(atoms: dict) -> dict:
    """gunicorn's access-log atoms with every path, query, referer and credential made safe."""
    safe = dict(atoms)
    for key, value in atoms.items():
        if not isinstance(value, str):
            continue
        if key == "r":  # the request line: METHOD URI PROTOCOL
            method, _, rest = value.partition(" ")
            uri, space, protocol = rest.rpartition(" ") if " " in rest else (rest, "", "")
            safe[key] = f"{method} {redact_path(uri)}{space}{protocol}"
        elif key in URL_ATOMS:
            safe[key] = redact_path(value)
        elif key in QUERY_ATOMS:
            safe[key] = redact_query(value)
        elif key.startswith("{") and any(word in key.lower() for word in SECRET_WORDS):
            safe[key] = REDACTED
    if safe.get("u") not in (None, "-"):
        safe["u"] = REDACTED  # a basic-auth user name (Postmark's webhook credentials)
    return safe


class RedactingLogger(Logger):
    """gunicorn's logger, its access-log atoms redacted (gunicorn --logger-class)."""

    def atoms(self, resp, req, environ, request_time):
        return redact_atoms(super().atoms(resp, req, environ, request_time))
