"""The channels relay speaks on, and the SMS length a provider accepts: defined once here, at the
bottom layer, so rendering, members, fan-out and the providers all read the same values."""
from __future__ import annotations

from datetime import timedelta

CHANNELS = ("sms", "email", "whatsapp")  # in this order wherever channels are listed

# WhatsApp through Twilio (issue 19): addresses carry this prefix on the wire (From/To), and free-form
# messages are allowed only this long after the member's last message to us; outside it, a template.
WHATSAPP_PREFIX = "whatsapp:"
WHATSAPP_WINDOW = timedelta(hours=24)

# Twilio rejects a Body over 1,600 characters (error 21617); we shorten before sending.
SMS_MAX_CHARS = 1600
