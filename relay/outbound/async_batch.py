"""The send phase of a bulk batch (relay/outbound/bulk.py) on the process's event loop
(relay/infra/eventloop.py) instead of a thread pool: each message is a coroutine awaiting its sender's
`send_async` (twilio's async client, relay/providers/twilio_async.py; aiosmtplib's pool,
relay/providers/smtp_email.py), at most RELAY_SEND_CONCURRENCY in flight per channel (that many lanes each).

Only the sending moves. The batch is claimed, checked and built by bulk._prepare exactly as before, and
recorded by bulk.send_batch exactly as before, from the same (message, result, error, recorded) tuples
bulk._send_one returns: a rate-limit deferral is recorded at once (in a thread: it is a database
transaction), other errors go through sending.record_failure afterwards, and a sender without
`send_async` (the dev outbox) runs its synchronous send in a thread. So idempotency (the claim), the
rate limits (take_slot, the provider's 429 pause), the hold, the error-burst pause and the quiet-hours
ladder behave as on the threaded path. Why: threads waiting on futures were ~15 % of a broadcast's
samples, and every send crossed from a thread into the SMTP loop and back (docs/scale.md)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from relay.infra.eventloop import shared_loop
from relay.model.messages import OutboundMessage, SendError
from relay.outbound.sending import record_failure

log = logging.getLogger(__name__)

Result = tuple[OutboundMessage, Any, SendError | None, Any]


async def _send_one(services, message: OutboundMessage, attempts: int) -> Result:
    sender = services.sender(message.channel)
    send_async = getattr(sender, "send_async", None)
    try:
        if send_async is None:  # a sender with no async path: its own send, in a thread
            return message, await asyncio.to_thread(sender.send, message), None, None
        return message, await send_async(message), None, None
    except SendError as error:
        if error.throttled:  # its booked slot may come before the batch is done: recorded now
            recorded = await asyncio.to_thread(record_failure, services, message.delivery_id, attempts, error)
            return message, None, error, recorded
        return message, None, error, None
    except Exception as exc:  # a sender bug must not lose the rest of the batch
        log.exception("delivery %s: unexpected sender error", message.delivery_id)
        return message, None, SendError(f"{type(exc).__name__}: {exc}", code="client", retryable=True), None


async def _send_all(services, messages: Sequence[OutboundMessage], attempts: dict[int, int]) -> list[Result]:
    """RELAY_SEND_CONCURRENCY lanes per channel, each taking the channel's next message as soon as it is free (as
    the raw clients of bench/raw_limit.py do), rather than a task per message behind a semaphore: the task and the
    semaphore's wait cost ~5 % of the worker's CPU per message (issue 18, docs/scale.md)."""
    limit = max(1, services.settings.send_concurrency)
    results: list[Result | None] = [None] * len(messages)
    by_channel: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        by_channel.setdefault(message.channel, []).append(index)

    async def lane(queue) -> None:
        for index in queue:
            message = messages[index]
            results[index] = await _send_one(services, message, attempts[message.delivery_id])

    lanes = []
    for indexes in by_channel.values():
        queue = iter(indexes)  # shared by the channel's lanes: each takes the next message when it is free
        lanes += [lane(queue) for _ in range(min(limit, len(indexes)))]
    await asyncio.gather(*lanes)
    return results  # type: ignore[return-value]  # every index is filled: each lane runs its channel's queue dry


def send_all(services, messages: Sequence[OutboundMessage], attempts: dict[int, int]) -> list[Result]:
    """Send a prepared batch from the process's loop; blocks the calling (task) thread until every
    message has an answer. The results are in the order of `messages`."""
    future = asyncio.run_coroutine_threadsafe(_send_all(services, messages, attempts), shared_loop())
    return future.result()
