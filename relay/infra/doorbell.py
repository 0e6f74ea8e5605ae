"""The doorbell: one Redis key that says "a drain task is queued or running".

The webhook edge rings it after storing an event (`SET key NX EX ttl`, one round trip): only the
ring that finds it silent queues a drain task. The drain task silences it before its first claim,
so an event stored after that claim rings again and gets a task of its own; an event stored
before it is seen by the claim. Nothing is lost if a ring is: the event is in the database, and
the sweeper re-queues whatever waits longer than a minute. The TTL bounds how long a lost drain
task (a broker restart) can keep the bell rung.

Coalescing: a ring, whatever it answers, proves that a drain task will start (and claim) after
the moment it was sent. So for COALESCE_SECONDS after sending one, a web process skips the round
trip: under load most webhooks cost no Redis command at all. An event stored in that window may
be committed after that drain's last claim; the drain therefore lingers LINGER_SECONDS (longer
than the window) after finding nothing and claims once more (relay/inbound/drain.py)."""
from __future__ import annotations

import time

import redis

COALESCE_SECONDS = 0.05
LINGER_SECONDS = 2 * COALESCE_SECONDS
# A ring is one SET on loopback or a LAN (well under a millisecond): a Redis that takes longer than
# this is hung or gone, and every webhook would wait for it. The ring fails instead (logged by
# dispatch_safely); the event is stored, and the sweeper queues it.
REDIS_TIMEOUT_SECONDS = 0.5


class RedisDoorbell:
    def __init__(self, client: "redis.Redis", key: str, ttl_seconds: int = 30,
                 coalesce_seconds: float = COALESCE_SECONDS, clock=time.monotonic):
        self.client, self.key, self.ttl = client, key, ttl_seconds
        self.coalesce_seconds, self.clock = coalesce_seconds, clock
        self._skip_until = float("-inf")

    @classmethod
    def from_url(cls, url: str, prefix: str = "") -> "RedisDoorbell":
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        return cls(client, f"{prefix}relay:inbound:doorbell")

    def ring(self) -> bool:
        """True if the bell was silent: the caller must queue a drain task."""
        sent = self.clock()
        if sent < self._skip_until:  # a ring sent less than the window ago covers this event
            return False
        rang = bool(self.client.set(self.key, b"1", nx=True, ex=self.ttl))
        self._skip_until = sent + self.coalesce_seconds  # measured from before the SET: conservative
        return rang

    def silence(self) -> None:
        self._skip_until = float("-inf")  # a failed publish: this process's next webhook rings again
        self.client.delete(self.key)

    def claim_helper_slot(self, seconds: int = 2) -> bool:
        """True at most once every `seconds`: lets a busy drainer start one more beside it."""
        return bool(self.client.set(self.key + ":helper", b"1", nx=True, ex=seconds))
