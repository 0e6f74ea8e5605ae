"""The senders' loop (relay/infra/eventloop.py) is uvloop's, runs in its own thread, and is one per process."""
from __future__ import annotations

import asyncio

import uvloop

from relay.infra.eventloop import shared_loop


def test_the_shared_loop_is_uvloops_and_runs():
    loop = shared_loop()
    assert isinstance(loop, uvloop.Loop)
    assert shared_loop() is loop  # one per process

    async def where():
        return asyncio.get_running_loop()

    assert asyncio.run_coroutine_threadsafe(where(), loop).result(timeout=5) is loop
