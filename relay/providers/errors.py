"""The error every inbound adapter raises for a payload it cannot use (without importing any provider SDK)."""
from __future__ import annotations


class BadWebhook(ValueError):
    """The request is authentic (or not yet checked) but cannot be used; the message says why (a 4xx)."""
