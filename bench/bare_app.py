"""The ingest baseline: a bare Flask handler that parses the same Twilio form and answers the same
empty TwiML, with no signature check, database or queue. Run under the same server and settings as
`relay web` (bench/run.py starts both): gunicorn's config, or granian's factory below."""
from __future__ import annotations

from flask import Flask, Response, request

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'

app = Flask(__name__)


@app.post("/webhooks/twilio/sms")
def sms() -> Response:
    form = request.form
    if not form.get("MessageSid") or not form.get("From"):
        return Response("missing fields", status=400)
    return Response(EMPTY_TWIML, content_type="text/xml; charset=utf-8")


def granian_app() -> Flask:
    """granian's factory: the handler with what relay's granian workers add (the access log, gc.freeze)."""
    from webhooks.serving import granian_app as served

    return served(app)
