"""A guard against a kombu Redis-transport bug that made a Celery worker exit when Redis vanished.

When the broker connection is lost, kombu closes the old Connection (`Connection._close` sets its
transport's `client` to None). A task finishing afterwards is acknowledged on a channel of that old
connection, the channel asks for a new Redis client, and `Channel._connparams` reads
`self.connection.client.hostname`: `AttributeError: 'NoneType' object has no attribute 'hostname'`.
Celery treats an AttributeError as a bug and the worker exits (docs/RELIABILITY.md section 2).

The guard turns that case into what it is, a lost connection (redis.exceptions.ConnectionError, one
of the transport's connection errors): Celery's acknowledgement (`Message.ack_log_error`) logs it
and goes on, the consumer reconnects, and the unacknowledged task comes back from Redis (acks late;
the sweeper re-queues anything lost with a broker that restarted empty)."""
from __future__ import annotations

import logging

log = logging.getLogger("relay.worker")


def install() -> bool:
    """Patch kombu's Redis Channel once per process; True if the guard is (now) in place."""
    try:  # reason: optional; the Redis transport is there only with a Redis broker
        import redis.exceptions
        from kombu.transport import redis as kombu_redis
    except ImportError:  # no Redis transport: nothing to guard
        return False
    original = kombu_redis.Channel._connparams
    if getattr(original, "relay_guard", False):
        return True

    def _connparams(self, asynchronous=False):
        if getattr(self.connection, "client", None) is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection this channel belonged to is closed (lost while Redis was away)")
        return original(self, asynchronous)

    _connparams.relay_guard = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams
    return True
