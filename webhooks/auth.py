"""Signing in and out of the console and the library, and the checks every page uses.

The session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure unless the public base is plain
http://), holding the member id, a fingerprint of the password hash and the account's session
generation (checked against the database on every request: a changed password or a sign-out ends
every session of the account, a copied cookie included) and the time of the last request (an idle session ends after
RELAY_SESSION_IDLE_TIMEOUT). Sign-in starts a fresh session. Every state-changing form of the
console and the library carries a CSRF token (Flask-WTF), checked by `check_csrf`; the other
blueprints (provider webhooks, the bearer-token API, one-click unsubscribe) take no cookies and are
not affected. Sign-in attempts are rate limited per client address, and failed ones per account."""
from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect

from relay.access import permissions
from relay.access.accounts import authenticate, end_sessions, session_stamp
from relay.infra.audit import Actor
from relay.infra.db import transaction
from relay.infra.logs import mask, redact_path
from relay.model.tables import Member

log = logging.getLogger("relay.web.auth")
blueprint = Blueprint("auth", __name__)
csrf = CSRFProtect()


@dataclass(frozen=True)
class SignedIn:
    """The member behind the current request (a plain value: no database session needed)."""

    id: int
    name: str
    email: str
    roles: frozenset[str]
    language: str = "en"  # issue 21: the pages speak the member's own language (webhooks/i18n.py)
    timezone: str = "UTC"

    def may(self, action: str) -> bool:
        return permissions.allowed(self.roles, action)

    def actor(self, source: str) -> Actor:
        return Actor(f"member:{self.id}", source, self.id)


# Paths that never use the session cookie: provider webhooks are signed, the API takes bearer tokens.
COOKIELESS_PATHS = ("/webhooks/", "/api/", "/healthz", "/metrics")


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session, not opened on the cookieless paths: verifying a cookie costs
    every provider webhook a serializer and an HMAC for a session nothing reads."""

    def open_session(self, app, request):
        if request.path.startswith(COOKIELESS_PATHS):
            return self.null_session_class()
        return super().open_session(app, request)


def configure_sessions(app: Flask, settings) -> None:
    """Session cookie and CSRF settings; called by create_app."""
    app.session_interface = CookieSessions()
    app.secret_key = hashlib.sha256(f"relay-web-session:{settings.secret()}".encode()).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="relay_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=settings.session_idle_timeout,
        SESSION_REFRESH_EACH_REQUEST=True,
        WTF_CSRF_CHECK_DEFAULT=False,  # only the blueprints that call check_csrf (see the docstring)
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session (which idles out)
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
    )
    csrf.init_app(app)

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError):
        log.warning("%s %s: CSRF check failed: %s", request.method, redact_path(request.path), exc.description)
        return render_template("console/message.html", title=_("Form expired"),
                               message=_("This form was not accepted (its security token is missing or stale). "
                                         "Go back, reload the page and try again.")), 400

    @app.context_processor
    def signed_in_member():
        return {"me": current_member()}


def check_csrf() -> None:
    """Refuse (400) a state-changing request without a valid CSRF token. A blueprint's before_request."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


def current_member() -> SignedIn | None:
    """The signed-in member, or None (signed out, idle too long, password changed, or deactivated)."""
    if "signed_in" in g:
        return g.signed_in
    g.signed_in = None
    member_id = session.get("member_id")
    if member_id is None:
        return None
    settings = current_app.extensions["relay"].settings
    now = time.time()
    if now - float(session.get("seen", 0)) > settings.session_idle_timeout.total_seconds():
        session.clear()
        return None
    services = current_app.extensions["relay"]
    with services.sessions() as db:
        member = db.get(Member, member_id)
        stamp = session_stamp(db, member_id) if member is not None else ""
        if member is None or not member.active or not stamp or stamp != session.get("stamp"):
            session.clear()
            return None
        g.signed_in = SignedIn(member.id, member.name, member.email or "", member.role_set, member.language or "en",
                               member.timezone or "UTC")
    session["seen"] = now
    return g.signed_in


def requires(action: str):
    """A view decorator: signed-out visitors go to sign-in, members without the role get a 403 page."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            me = current_member()
            if me is None:
                return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")
                                        if request.method == "GET" else None))
            if not me.may(action):
                log.warning("member %s refused %s on %s %s", me.id, action, request.method, request.path)
                return render_template("console/message.html", title=_("Not allowed"),
                                       message=_("Your account cannot do this (%(action)s needs a coordinator "
                                                 "or admin). Ask a coordinator if you need it.", action=action)), 403
            return view(*args, **kwargs)
        return wrapper
    return decorate


# C0 controls and DEL (browsers drop tabs and newlines inside a URL, so "/\t/evil" becomes "//evil"),
# and the backslash (browsers read "/\\evil" as "//evil").
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_next_path(target: str | None) -> str | None:
    """`target` when it is a path on this site, else None. Checked as given and once percent-decoded
    (what a browser or a later redirect may make of it): no control characters or backslashes, a
    single leading "/", and no scheme or network location as urllib reads it ("//x", "https:x")."""
    if not target or len(target) > 2000:
        return None
    for form in (target, unquote(target)):
        if _UNSAFE_IN_NEXT.search(form) or not form.startswith("/") or form.startswith("//"):
            return None
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return None
    return target


def _safe_next(target: str | None, me: SignedIn) -> str:
    """Only a path on this site is followed after sign-in; anything else goes home."""
    safe = safe_next_path(target)
    if safe is None and target:
        log.warning("sign-in refused to follow next=%r (not a path on this site)", target[:200])
    return safe or ("/console/" if me.may("notice.send") else "/library/")


blueprint.before_request(check_csrf)


@blueprint.get("/signin")
def sign_in_form():
    return render_template("console/signin.html", error=None, email="", next=request.args.get("next", ""))


@blueprint.post("/signin")
def sign_in():
    email = (request.form.get("email") or "").strip()
    password = request.form.get("password") or ""
    target = request.form.get("next") or ""
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as db:
        member = authenticate(db, email, password)
        stamp = session_stamp(db, member.id) if member else ""
        me = SignedIn(member.id, member.name, member.email or "", member.role_set, member.language or "en",
                      member.timezone or "UTC") if member else None
    if me is None:
        log.warning("sign-in refused for %s from %s", mask(email[:80]), request.remote_addr)
        return render_template("console/signin.html", error=_("Unknown email or wrong password."),
                               email=email[:320], next=target), 401
    session.clear()  # a fresh session: nothing from before sign-in survives (nor its CSRF token)
    session.permanent = True
    session.update(member_id=me.id, stamp=stamp, seen=time.time())
    g.signed_in = me
    log.info("member %s signed in from %s", me.id, request.remote_addr)
    return redirect(_safe_next(target, me))


@blueprint.post("/signout")
def sign_out():
    """Ends the session server-side: the account's session generation goes up, so this cookie (and
    any copy of it, and the member's sessions elsewhere) no longer signs anyone in."""
    me = current_member()
    if me is not None:
        with transaction(current_app.extensions["relay"].sessions) as db:
            end_sessions(db, me.id)
        log.info("member %s signed out (every session of the account ended)", me.id)
    session.clear()
    return redirect("/library/")


def _account_key() -> str:
    return "account:" + (request.form.get("email") or "").strip().lower()[:320]


def _refused(response) -> bool:
    return response.status_code == 401


def rate_limit_sign_in(app: Flask, limiter, settings) -> None:
    """Sign-in POSTs per client address, and failed sign-ins per account whatever the address (so
    guessing one member's password from many addresses stops too). create_app calls this once the
    limiter exists."""
    view = app.view_functions["auth.sign_in"]
    view = limiter.limit(settings.signin_account_limit, key_func=_account_key, methods=["POST"],
                         deduct_when=_refused, scope="signin-account")(view)
    app.view_functions["auth.sign_in"] = limiter.limit(settings.signin_rate_limit, methods=["POST"])(view)
