"""The embedded broker: kombu's filesystem transport, with its two write races closed.

`relay up` on the embedded defaults queues tasks as files under var/broker/ (kombu's filesystem
transport), so a first run needs no broker. Kombu 5.7 writes a message by opening its final name and
then writing to it; a worker polling the folder at that moment moves and reads the still-empty file,
fails to decode it (kombu issue #1551, open) and the task is gone. Measured on this machine with three
publishers and one consumer under CPU load: 128 of 3,000 messages lost. Binding a queue to an exchange
has the same shape (the exchange file is truncated before it is locked), which is the
`JSONDecodeError` in `queue_bind` a worker sometimes died of at start.

No maintained library offers a safer filesystem broker, and the fix is small, so it lives here:
- a message is written under a temporary name the consumer does not match, then renamed into place
  (`os.replace` is atomic on one filesystem), so a consumer sees a whole message or none;
- an exchange file is opened without truncation and only read and rewritten under its lock; an empty
  file (just created by another process) is an empty table.

The transport is chosen by `broker_transport` in relay.infra.dispatch.celery_config; the broker URL
stays `filesystem://`."""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    """Atomic message files and race-free exchange tables."""

    def _put(self, queue, payload, **kwargs):  # type: ignore[override]  # kombu's own signature
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: `_get` matches "<anything>.<queue>.msg" on the text after the first dot,
        # which for ".writing-…" is "writing-…", never a queue's name.
        temporary = os.path.join(self.data_folder_out, f".writing-{uuid.uuid4()}")
        try:
            with open(temporary, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(temporary, final)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f:
                filesystem.lock(f, filesystem.LOCK_SH)
                try:
                    text = f.read()
                finally:
                    filesystem.unlock(f)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        return [filesystem.exchange_queue_t(*q) for q in loads(text)] if text.strip() else []

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # O_CREAT without O_TRUNC: whoever comes first creates it, nobody empties another's table.
            with os.fdopen(os.open(file, os.O_RDWR | os.O_CREAT, 0o644), "rb+", buffering=0) as f:
                filesystem.lock(f, filesystem.LOCK_EX)
                try:
                    text = f.read()
                    table = [filesystem.exchange_queue_t(*q) for q in loads(text)] if text.strip() else []
                    if binding not in table:
                        table.insert(0, binding)
                        f.seek(0)
                        f.truncate()
                        f.write(dumps(table).encode())
                finally:
                    filesystem.unlock(f)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with relay's Channel."""

    Channel = Channel
