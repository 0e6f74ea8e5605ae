"""The names of a delivery's states and of the codes a queued delivery waits under.

Plain strings stored in `deliveries.status` / `deliveries.error_code`. They live in the model so that
providers (which map their own status words onto them) and outbound (which moves deliveries between
them, relay/outbound/deliveries.py) both see them without importing each other."""
from __future__ import annotations

QUEUED = "queued"
SENDING = "sending"
ACCEPTED = "accepted"
SENT = "sent"
DELIVERED = "delivered"
READ = "read"  # issue 19: WhatsApp says the member opened it; after delivered, never backwards
UNDELIVERED = "undelivered"
FAILED = "failed"
OPTED_OUT = "opted_out"
HELD = "held"  # a paused notice's delivery, waiting for `relay notice resume` (relay/outbound/bursts.py)

FINAL = frozenset({DELIVERED, READ, UNDELIVERED, FAILED, OPTED_OUT})

# Error codes of a queued delivery that is waiting, not failing (none of these waits is an attempt):
RATE_LIMITED = "rate_limited"  # for a sending slot it booked (relay/infra/ratelimit.py take_slot)
THROTTLED = "throttled"  # a provider's 429 with Retry-After
QUIET_HOURS = "quiet_hours"  # the member's quiet hours began after it was planned (relay/outbound/checks.py)
WAITING_CODES = frozenset({RATE_LIMITED, THROTTLED, QUIET_HOURS, "held"})
RATE_LIMIT_CODES = frozenset({RATE_LIMITED, THROTTLED})
