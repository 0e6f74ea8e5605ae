"""The channels relay speaks on, and the SMS length a provider accepts: defined once here, at the
bottom layer, so rendering, members, fan-out and the providers all read the same values."""
from __future__ import annotations

CHANNELS = ("sms", "email")  # in this order wherever channels are listed

# Twilio rejects a Body over 1,600 characters (error 21617); we shorten before sending.
SMS_MAX_CHARS = 1600
