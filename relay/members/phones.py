"""Phone numbers in E.164, parsed with phonenumbers (never by hand)."""
from __future__ import annotations

import phonenumbers

from relay.model.translatable import N_, Translatable


class InvalidPhone(Translatable, ValueError):
    """Not a phone number; the message says why (in the reader's language on a page)."""


def to_e164(text: str, default_region: str | None = None) -> str:
    """Return the E.164 form of `text`, or raise InvalidPhone saying why."""
    raw = (text or "").strip()
    if not raw:
        raise InvalidPhone(N_("empty phone number"))
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:  # its text ("(1) The string supplied...") is the library's, not ours
        raise InvalidPhone(N_("%(value)s is not a phone number: write it with + and the country code, "
                              "e.g. +821012345678"), value=repr(raw)) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(N_("%(value)s is not a valid phone number"), value=repr(raw))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """Two-letter region of an E.164 number ('' when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""
