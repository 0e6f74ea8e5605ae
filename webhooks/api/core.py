"""What every route of the JSON API shares: the blueprint, who the caller is and what they may do
(`requires`, `may`, `actor`), the 401/403 answers, and the small JSON helpers.

Who may call what is decided by relay/access/permissions.py, never here: a per-member token (relay tokens
create) carries its member's roles as they are at each request; the shared RELAY_API_TOKEN is a service
token with admin rights (audited as "api-token"); anonymous callers may read public cases only. A
missing, unknown or revoked token is a 401 with a WWW-Authenticate challenge, a known caller whose roles
do not allow the action a 403; each with a JSON error body and a log line (never the token)."""
from __future__ import annotations

import functools
import logging
from typing import NoReturn

from flask import Blueprint, current_app, g, jsonify, request

from relay.access.api_tokens import ANONYMOUS, Caller, Refusal, TokenRefused, authenticate
from relay.access.permissions import allowed
from relay.infra.db import transaction
from relay.infra.logs import mask_text, redact_path
from relay.model.translatable import N_, Translatable

from ..i18n import error_text
from ..i18n import refuse as abort_with

log = logging.getLogger("relay.web.api")
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
CHALLENGE = 'Bearer realm="relay"'
SIGNED_IN = ""  # requires(SIGNED_IN): any valid token; the view decides the rest (a member's own record)

# Ids and case numbers are 32-bit integer columns: a larger one in a URL or body is simply not there
# (PostgreSQL would refuse the query, and the answer would be a misleading 503).
MAX_ID = 2**31 - 1


class RequestRefused(Translatable, ValueError):
    """A request the API does not take as sent (its shape: not a JSON object, a field missing or of the
    wrong type; or who sends it): `detail` is the English (stable, for scripts), `message` the caller's
    language (Accept-Language), as every API error's (issue 21)."""


def bad_request(status: int, message: str, **variables) -> NoReturn:
    """abort(status) with a catalogue message (`N_("…")`) and its values: `detail` English, `message` in the
    caller's language."""
    abort_with(status, RequestRefused(message, **variables))


def refuse(status: int, detail: str | RequestRefused, challenge: str | None = None):
    """A 401 or 403 answered directly (not through abort), so the WWW-Authenticate header survives; with
    a `message` in the caller's language when the reason is a catalogue one."""
    log.warning("%s %s: %s %s", request.method, redact_path(request.path), status, mask_text(str(detail)))
    response = jsonify(error="Unauthorized" if status == 401 else "Forbidden", detail=str(detail),
                       message=error_text(detail) if isinstance(detail, BaseException) else detail)
    response.status_code = status
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def current_caller() -> Caller | Refusal:
    """Who this request comes from, read once per request (the member's roles as they are now)."""
    if "relay_caller" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header:
            g.relay_caller = ANONYMOUS
        elif scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive (RFC 7235)
            g.relay_caller = Refusal(TokenRefused(N_("the Authorization header must be %(form)s"),
                                                   form="'Bearer <token>'"))
        else:
            services = current_app.extensions["relay"]
            with transaction(services.sessions) as session:  # it may note the token's last use
                g.relay_caller = authenticate(session, token.strip(), services.settings.api_token)
    return g.relay_caller


def _check(action: str | None):
    """None when the caller may go on; else the 401/403 answer. action None: anyone, even anonymous."""
    caller = current_caller()
    if isinstance(caller, Refusal):
        return refuse(401, caller.reason, CHALLENGE + ', error="invalid_token"')
    if action is None:
        return None
    if caller.anonymous:
        return refuse(401, RequestRefused(N_("a bearer token is needed: %(header)s"),
                                          header="'Authorization: Bearer <token>'"), CHALLENGE)
    if action == SIGNED_IN:
        return None
    if not allowed(caller.roles, action):
        if not caller.roles:
            return refuse(403, RequestRefused(N_("%(who)s may not %(action)s (roles: none)"),
                                              who=caller.actor.label, action=action))
        return refuse(403, RequestRefused(N_("%(who)s may not %(action)s (roles: %(roles)s)"),
                                          who=caller.actor.label, action=action, roles=", ".join(sorted(caller.roles))))
    return None


def requires(action: str | None):
    """Guard a route with one action of relay.access.permissions (None: open to anonymous callers, whose
    token, if they give one, must still be valid)."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            refusal = _check(action)
            return refusal if refusal is not None else view(*args, **kwargs)

        return guarded

    return decorate


def caller_roles() -> frozenset[str]:
    """The caller's roles (none for a refused token), for the core to check again what the route allowed."""
    caller = current_caller()
    return caller.roles if isinstance(caller, Caller) else frozenset()


def may(action: str) -> bool:
    """Whether the (already authenticated) caller may do `action`: for answers that depend on it."""
    caller = current_caller()
    return isinstance(caller, Caller) and allowed(caller.roles, action)


def actor():
    """The audit actor for this request: the token's member with source "api", or "api-token"."""
    return current_caller().actor


def json_object(optional: bool = False) -> dict:
    """The request's JSON object body (optional: an empty body reads as {}); else a 400."""
    data = request.get_json(silent=True)
    if data is None and optional and not request.get_data():
        return {}
    if not isinstance(data, dict):
        bad_request(400, N_("expected a JSON object"))
    return data


def field(data: dict, name: str, kinds, default=None):
    """data[name] (or default) if it is of one of `kinds`; else a 400."""
    value = data.get(name, default)
    if value is not None and not isinstance(value, kinds):
        bad_request(400, N_("%(name)s has the wrong type"), name=repr(name))
    return value


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None
