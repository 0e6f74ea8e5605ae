"""Email addresses checked by email-validator (never by hand): syntax only, no DNS lookups."""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def is_email_address(text: str) -> bool:
    """True when `text` is one plain email address (no display name, no angle brackets)."""
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
