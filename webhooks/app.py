"""Application factory: nothing happens at import; tests build an app from settings and services.

`relay web` serves it: granian through `webhooks.serving:granian_app`, which calls `create_app()` in each worker,
or gunicorn as `gunicorn 'webhooks.app:create_app()'` (`--server gunicorn`)."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from jinja2 import FileSystemLoader
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from relay.infra.db import driver_autocommit, make_engine
from relay.infra.dispatch import warm_quietly
from relay.infra.logs import configure_logging
from relay.infra.settings import Settings, SettingsError
from relay.services import Services, build_services

from .auth import rate_limit_sign_in
from .errors import database_unavailable_response, error_page, http_error_response, log_http_error
from .fast_path import ProviderWebhooks
from .proxies import TrustedProxies

log = logging.getLogger("relay.web")
# An email webhook's form: some 30 fields and one part per attachment (Mailgun, SendGrid).
EMAIL_MAX_FORM_PARTS = 500


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    configure_logging()
    if settings is None and services is None:  # `create_app()` from a server (relay web): a serving process
        settings = Settings.from_env()
        settings.check_startup()
    settings = settings or services.settings
    refused = settings.dev_outbox_problems() + (services.settings.dev_outbox_problems() if services else [])
    if refused:
        raise SettingsError(refused[0])
    app = Flask(__name__, template_folder=str(settings.templates_dir / "web"))
    # Email webhooks carry attachments; every other route keeps the small limit (see below).
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_webhook_bytes, settings.max_email_bytes)
    app.config["MAX_FORM_MEMORY_SIZE"] = max(settings.max_webhook_bytes, settings.max_email_bytes)
    # Library pages live in templates/web/, the console's in templates/console/ (as "console/...").
    app.jinja_loader = FileSystemLoader([str(settings.templates_dir / "web"), str(settings.templates_dir)])
    # No ping before each checkout: it is a round trip on every webhook. After a database restart the
    # first statement on a stale connection fails (a 503 the provider retries) and SQLAlchemy
    # replaces every connection the pool held, so that costs one request, not one per connection.
    app.extensions["relay"] = services or build_services(
        settings, engine=make_engine(settings.database_url, pool_pre_ping=False))

    from . import (
        acknowledge,
        api,
        auth,
        console,
        email_confirm,
        i18n,
        inbound_email,
        library,
        ops,
        preferences,
        reach,
        twilio,
        twilio_voice,
        unsubscribe,
    )

    auth.configure_sessions(app, settings)
    i18n.configure(app)  # issue 21: the pages' language and time zone (flask-babel, one catalogue)

    @app.before_request
    def body_limit():
        if request.path.startswith("/console/cases/") and request.method == "POST":
            # case forms carry image uploads (streamed to disk; text fields keep the small limit)
            request.max_content_length = settings.max_email_bytes
            request.max_form_memory_size = settings.max_webhook_bytes
        elif request.path.startswith("/webhooks/email/"):
            # issue 13: capped while werkzeug parses (Mailgun's signature check); a raw-mode field
            # (body-mime) may be the whole message, so a field may be as large as the body
            request.max_content_length = settings.max_email_bytes
            request.max_form_memory_size = settings.max_email_bytes
            request.max_form_parts = EMAIL_MAX_FORM_PARTS
        else:
            request.max_content_length = settings.max_webhook_bytes
            request.max_form_memory_size = settings.max_webhook_bytes

    app.register_blueprint(twilio.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(library.blueprint)
    app.register_blueprint(unsubscribe.blueprint)
    app.register_blueprint(inbound_email.blueprint)
    app.register_blueprint(email_confirm.blueprint)  # issue 13: held email posts
    app.register_blueprint(api.blueprint)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(console.blueprint)
    app.register_blueprint(preferences.blueprint)  # issue 5: preference page, digest subscription
    app.register_blueprint(acknowledge.blueprint)  # issue 17: the signed acknowledgement link
    app.register_blueprint(twilio_voice.blueprint)  # issue 17: the escalation call's Gather callback
    app.register_blueprint(reach.blueprint)  # issue 20: the reader count's image, the console's Reach pages
    _rate_limits(app, settings)

    @app.errorhandler(DBAPIError)
    def database_unavailable(exc):
        return database_unavailable_response(request, exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Issue 21: the API answers a stable English `error` and `detail` plus a `message` in the reader's
        language; the provider webhooks and /metrics plain text; every page an error page in the reader's
        language (webhooks/i18n.py, `refuse` and `http_error_words`)."""
        if request.path.startswith(("/api/", "/healthz")):
            log_http_error(request, exc)
            return jsonify(error=exc.name, detail=exc.description, message=i18n.http_error_words(exc)[1]), exc.code
        if request.path.startswith(PLAIN_ERROR_PATHS):
            return http_error_response(request, exc)
        return error_page(request, exc)

    # Twilio's webhooks are answered ahead of Flask's request machinery (webhooks/fast_path.py).
    app.wsgi_app = ProviderWebhooks(app.wsgi_app, app.extensions["relay"])
    if settings.trusted_proxies:  # outermost: every path, the fast path too, sees the real client
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)
    return app


def _rate_limits(app: Flask, settings: Settings) -> None:
    """Open endpoints are rate limited per client address (the real client behind a trusted proxy:
    webhooks/proxies.py), counted in Redis when relay uses Redis (shared by every web process), else
    in each process's memory. When Redis cannot be reached the limits are counted in this process's
    memory until it is back (flask-limiter's in-memory fallback), never a 500: a coordinator must be
    able to sign in and press hold during a Redis outage."""
    storage, options, storage_options = "memory://", {}, {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        storage = settings.broker_url
        options = {"key_prefix": f"{settings.broker_prefix}relay-limits"}
        # a hung Redis costs a request a second at most before the fallback takes over
        storage_options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage, storage_options=storage_options,
                      headers_enabled=True, in_memory_fallback_enabled=True, swallow_errors=True, **options)
    view = app.view_functions["api.sms_preview"]
    app.view_functions["api.sms_preview"] = limiter.limit(settings.preview_rate_limit)(view)
    app.extensions["relay-limiter"] = limiter
    # Provider webhooks are signed and come from the providers' few addresses: a per-address limit
    # would refuse a busy provider.
    limiter.exempt(app.blueprints["twilio"])
    limiter.exempt(app.blueprints["twilio_voice"])
    limiter.exempt(app.blueprints["email"])
    _skip_app_wide_check(app, limiter, PROVIDER_BLUEPRINTS)
    # the open digest form sends a confirmation email: the same per-address limit as sign-in attempts
    subscribe = app.view_functions["preferences.subscribe_post"]
    app.view_functions["preferences.subscribe_post"] = limiter.limit(settings.signin_rate_limit)(subscribe)
    rate_limit_sign_in(app, limiter, settings)


PROVIDER_BLUEPRINTS = frozenset({"twilio", "email"})
# Paths whose errors are read by programs, not people: plain text, as before (the API and /healthz: JSON).
PLAIN_ERROR_PATHS = ("/webhooks/", "/metrics")


def _skip_app_wide_check(app: Flask, limiter, blueprints: frozenset[str]) -> None:
    """Keep the limiter's app-wide check off `blueprints`. Even for an exempt blueprint it resolves
    the limits of every request (3 % of a webhook's CPU, docs/scale.md); the views that have limits
    check them in their own decorator, so nothing limited is skipped. The check is the hook that is
    a method of the limiter; if Flask-Limiter stops registering one, this fails at start-up."""
    hooks = app.before_request_funcs[None]
    index, check = next((i, hook) for i, hook in enumerate(hooks) if getattr(hook, "__self__", None) is limiter)

    def check_unless_provider_webhook():
        if request.blueprint not in blueprints:
            return check()
        return None

    hooks[index] = check_unless_provider_webhook


def services_of(app: Flask) -> Services:
    return app.extensions["relay"]


def warm_up(app: Flask, database: bool = True) -> None:
    """Open now what a serving process's first webhook would otherwise open while the others queue behind it:
    the kept insert connection (relay/infra/db.py driver_autocommit), the doorbell's Redis connection and what
    the first publish loads (relay/infra/dispatch.py warm), from gunicorn's post_worker_init
    (webhooks/serving.py). An app without relay's services (the bench's bare handler) has nothing to open. A
    failure is logged; the first webhook then opens them, as before."""
    services = app.extensions.get("relay")
    if services is None:
        return
    try:
        if database and services.engine.dialect.name == "postgresql":
            with driver_autocommit(services.engine) as driver:
                driver.execute("SELECT 1")
        doorbell = getattr(services.dispatcher, "doorbell", None)
        if doorbell is not None:
            doorbell.client.ping()
        warm_quietly(services.dispatcher)  # Celery's publishing side: the first drain task's ~100 ms
    except Exception as exc:
        logging.getLogger("relay.web").warning("warm-up: %s: %s (the first webhook opens it)",
                                               type(exc).__name__, exc)
