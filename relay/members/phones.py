"""Phone numbers in E.164, parsed with phonenumbers (never by hand)."""
from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


def to_e164(text: str, default_region: str | None = None) -> str:
    """Return the E.164 form of `text`, or raise InvalidPhone saying why."""
    raw = (text or "").strip()
    if not raw:
        raise InvalidPhone("empty phone number")
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{raw!r} is not a phone number ({exc}); use the +<country code> form") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """Two-letter region of an E.164 number ('' when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""
