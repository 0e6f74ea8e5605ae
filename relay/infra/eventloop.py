"""One asyncio event loop per process, in a daemon thread, for the async provider clients (aiosmtplib,
the lean Twilio client's aiohttp session): their connections belong to the loop that opened them, so every sender of a
process uses this one, and the bulk sender (relay/outbound/async_batch.py) runs a batch's sends on it.

A forked child (a Celery pool process) cannot use its parent's loop thread: the loop is made again
in a process whose id differs from the one that made it."""
from __future__ import annotations

import asyncio
import os
import threading

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (a runtime dependency: ~10 % less CPU per message sent than asyncio's
    own, docs/scale.md), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def shared_loop() -> asyncio.AbstractEventLoop:
    """This process's running loop (started on first use)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = _new_loop()
            threading.Thread(target=loop.run_forever, name="relay-async", daemon=True).start()
            _loop, _pid = loop, os.getpid()
        return _loop
