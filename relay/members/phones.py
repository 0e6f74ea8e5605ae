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
    except phonenumbers.NumberParseException:  # its text ("(1) The string supplied...") is the library's, not ours
        raise InvalidPhone(f"{raw!r} is not a phone number: write it with + and the country code, "
                           "e.g. +821012345678") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """Two-letter region of an E.164 number ('' when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""
