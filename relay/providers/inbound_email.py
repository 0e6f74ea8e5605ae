"""The inbound email adapters as one explicit registry: provider name -> how to parse its stored body."""
from __future__ import annotations

from relay.model.messages import InboundEmail
from relay.providers import mailgun, postmark, sendgrid

PROVIDERS = ("mailgun", "sendgrid", "postmark")


def parse_inbound_email(provider: str, content_type: str, body: bytes) -> InboundEmail:
    if provider == "mailgun":
        return mailgun.parse(content_type, body)
    if provider == "sendgrid":
        return sendgrid.parse(content_type, body)
    if provider == "postmark":
        return postmark.parse(body)
    raise ValueError(f"unknown email provider {provider!r}")
