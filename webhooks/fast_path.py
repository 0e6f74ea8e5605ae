"""Twilio's webhooks served ahead of Flask.

A provider webhook needs none of what Flask adds to every request: no session, no CSRF, no rate
limit, no templates, no URL routing beyond two fixed paths. Run through Flask, that machinery was
about 15 % of a webhook's CPU (docs/scale.md), and a webhook's latency under load is mostly
waiting for the ones ahead of it. So this WSGI layer, installed by create_app in front of Flask's
own, answers POSTs to the Twilio paths with the same handlers the Flask views call
(webhooks/twilio.py), the same body limit, and the same error answers (webhooks/app.py); every
other request goes to Flask untouched."""
from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Request

from relay.infra.logs import redact_path

from . import twilio
from .errors import database_unavailable_response, http_error_response

log = logging.getLogger("relay.web")


class ProviderWebhooks:
    def __init__(self, flask_wsgi_app, services):
        self.flask_wsgi_app = flask_wsgi_app
        self.services = services

    def __call__(self, environ, start_response):
        handler = twilio.HANDLERS.get(environ.get("PATH_INFO", ""))
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi_app(environ, start_response)
        request = Request(environ)
        limit = self.services.settings.max_webhook_bytes
        request.max_content_length = request.max_form_memory_size = limit
        try:
            response = handler(self.services, request)
        except DBAPIError as exc:
            response = database_unavailable_response(request, exc)
        except HTTPException as exc:
            response = http_error_response(request, exc)
        except Exception:
            log.exception("%s %s: unhandled error", request.method, redact_path(request.path))
            response = http_error_response(request, InternalServerError())
        finally:
            request.close()
        return response(environ, start_response)
