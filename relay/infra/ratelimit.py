"""Provider rate limits shared by every worker process and host: one Redis key per sender (an SMS
number, a Messaging Service, an SMTP server), updated atomically by a Lua script, so four workers on
two machines together never exceed what the provider allows.

The algorithm is GCRA (generic cell rate algorithm) with reservations: each call reserves the next
free slot on the sender's timeline and is told how long to wait for it, so callers queue up fairly
instead of polling. A send waits for a slot at most `max_wait` (30 s). A slot further away is
booked all the same, up to the delivery's deadline (`take_slot`): the send gives its lease back and
relay.outbound.sending puts the delivery back in the queue for that slot, without counting an attempt; when it
comes back (SLOT_LEAD early) it waits for its own slot instead of queueing up again. A slot past the
deadline is not booked. A provider's 429 with Retry-After pauses the sender for everyone (`pause`).

Time comes from the Redis server (TIME), so hosts with drifting clocks still share one timeline.
Hand-written because the well-kept libraries (limits, redis-cell) either answer only "allowed or
not" (no fair reservation for callers that must wait their turn) or need a Redis module."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from relay.model.messages import OutboundMessage, SendError

log = logging.getLogger(__name__)

RATE_LIMITED = "rate_limited"  # SendError code; also the delivery's while it waits for a slot (relay/outbound/deliveries.py)
SLOT_LEAD = 2.0  # a deferred delivery comes back this many seconds before its booked slot, and waits for it
SLOT_GRACE = 1.0  # ... and still takes its slot when it comes back up to this late (at most half the rate's
# interval, so two messages are never closer than that); later, it books another

# KEYS[1] the sender's key. ARGV: interval (us), burst (slots), max wait (us).
# Returns the wait in microseconds (>= 0) when a slot was reserved, or -(wait) when it was not.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then return -wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return wait
"""

# KEYS[1] the sender's key. ARGV[1]: pause (us). Nobody gets a slot before now + pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_ then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return until_ - now
"""


class RateLimited(Exception):
    """No slot within the wait allowed: try again after `retry_after` seconds."""

    def __init__(self, key: str, retry_after: float):
        super().__init__(f"rate limit for {key}: next slot in {retry_after:.1f}s")
        self.key = key
        self.retry_after = retry_after


@dataclass(frozen=True)
class Rate:
    """`count` messages per `per` seconds, at most `burst` back to back.

    `margin` widens the spacing a little (5 %) so network jitter between our clock and the
    provider's arrival clock does not put one message too many into a provider's window."""

    count: float
    per: float = 1.0
    burst: int = 1
    margin: float = 0.05

    @property
    def interval(self) -> float:
        return self.per / self.count * (1 + self.margin)


class RedisRateLimiter:
    """Shared limits in Redis (see the module docstring); thread-safe, one per process is enough."""

    def __init__(self, client, prefix: str = "", max_wait: float = 30.0):
        self.client = client
        self.prefix = prefix
        self.max_wait = max_wait
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "", max_wait: float = 30.0) -> "RedisRateLimiter":
        import redis  # reason: only with a Redis broker (the embedded broker and most tests run without)

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3), prefix, max_wait)

    def _key(self, key: str) -> str:
        return f"{self.prefix}relay:rate:{key}"

    def reserve(self, key: str, rate: Rate, max_wait: float | None = None) -> float:
        """Reserve the next slot for `key`: the seconds to wait before sending. RateLimited if the
        next slot is more than `max_wait` (default: the limiter's) away (nothing is reserved then)."""
        limit = self.max_wait if max_wait is None else max_wait
        result = int(self._reserve(keys=[self._key(key)], args=[int(rate.interval * 1e6), max(1, rate.burst),
                                                                  int(limit * 1e6)]))
        if result < 0:
            raise RateLimited(key, -result / 1e6)
        return result / 1e6

    def acquire(self, key: str, rate: Rate | None) -> None:
        """Wait for our slot (no-op without a rate)."""
        if rate is None:
            return
        wait = self.reserve(key, rate)
        if wait > 0:
            time.sleep(wait)

    def pause(self, key: str, seconds: float) -> None:
        """The provider asked everyone to wait (429 Retry-After): no slot for `key` before then."""
        if seconds > 0:
            self._pause(keys=[self._key(key)], args=[int(seconds * 1e6)])
            log.warning("rate limit %s paused for %.1fs at the provider's request", key, seconds)


class LocalRateLimiter:
    """The same limits within one process (embedded mode, no Redis): a lock and a timeline per key."""

    def __init__(self, max_wait: float = 30.0):
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def reserve(self, key: str, rate: Rate, max_wait: float | None = None) -> float:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, 0.0), now)
            wait = max(0.0, tat - (max(1, rate.burst) - 1) * rate.interval - now)
            if wait > (self.max_wait if max_wait is None else max_wait):
                raise RateLimited(key, wait)
            self._tat[key] = tat + rate.interval
            return wait

    def acquire(self, key: str, rate: Rate | None) -> None:
        if rate is None:
            return
        wait = self.reserve(key, rate)
        if wait > 0:
            time.sleep(wait)

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            self._tat[key] = max(self._tat.get(key, 0.0), time.monotonic() + seconds)


def take_slot(limiter, key: str, rate: Rate | None, message: OutboundMessage) -> None:
    """Wait for `message`'s sending slot on `key`'s timeline (no-op without a limiter or a rate).

    A slot the delivery booked earlier (`message.slot_at`) is its own: it waits for it and takes no
    other. Otherwise it reserves the next slot and waits up to the limiter's max_wait for it; a slot
    further away, but before `message.send_by`, is booked and SendError(throttled, slot_at) raised, so
    the caller can give the slot's delivery back to the queue until then. A slot past send_by (or
    past max_wait when the message has no send_by) is not booked: SendError(throttled) without slot_at."""
    if limiter is None or rate is None:
        return
    now = time.time()
    if message.slot_at is not None:
        wait = message.slot_at - now
        if -min(SLOT_GRACE, rate.interval / 2) <= wait <= limiter.max_wait + SLOT_LEAD:
            if wait > 0:
                time.sleep(wait)
            return
        log.info("delivery %s: its booked slot on %s was %.1fs ago; booking another", message.delivery_id, key, -wait)
    horizon = limiter.max_wait if message.send_by is None else max(limiter.max_wait, message.send_by - now)
    try:
        wait = limiter.reserve(key, rate, max_wait=horizon)
    except RateLimited as limited:
        raise SendError(str(limited), code=RATE_LIMITED, retryable=True, retry_after=limited.retry_after,
                        throttled=True) from None
    if wait <= limiter.max_wait:
        if wait > 0:
            time.sleep(wait)
        return
    raise SendError(f"rate limit for {key}: slot booked in {wait:.1f}s", code=RATE_LIMITED, retryable=True,
                    retry_after=wait, throttled=True, slot_at=now + wait)


# Twilio's published sending rates (messages per second) by kind of sender; a Messaging Service's
# rate is the sum of its pool, so relay leaves it to Twilio unless RELAY_SMS_RATE says otherwise.
SMS_RATES = {"long_code": 1.0, "toll_free": 3.0, "short_code": 100.0}
TOLL_FREE_PREFIXES = ("+1800", "+1833", "+1844", "+1855", "+1866", "+1877", "+1888")


def sender_kind(sender: str) -> str:
    """long_code, toll_free, short_code or messaging_service, from RELAY_TWILIO_FROM."""
    if sender.startswith("MG"):
        return "messaging_service"
    if sender.isdigit() and 3 <= len(sender) <= 8:
        return "short_code"
    if sender.startswith(TOLL_FREE_PREFIXES):
        return "toll_free"
    return "long_code"


def sms_rate(setting: str, sender: str) -> Rate | None:
    """The SMS rate for RELAY_SMS_RATE: `auto` (by sender kind), a kind name, a number per second,
    or 0 for none."""
    value = (setting or "auto").strip().lower()
    if value == "auto":
        value = sender_kind(sender)
    if value == "messaging_service":
        return None
    per_second = SMS_RATES.get(value)
    if per_second is None:
        per_second = float(value)
    return Rate(per_second) if per_second > 0 else None


def smtp_rate(per_minute: int) -> Rate | None:
    """RELAY_SMTP_RATE messages a minute, spread evenly (0: no limit)."""
    return Rate(per_minute, per=60.0) if per_minute > 0 else None


def limiter_for(settings):
    """A Redis limiter shared by every process when relay has a Redis (RELAY_RATE_LIMIT_URL, else a
    redis:// broker), else a per-process one."""
    url = settings.rate_limit_url or (settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://"))
                                      else "")
    if url:
        return RedisRateLimiter.from_url(url, prefix=settings.broker_prefix)
    return LocalRateLimiter()
