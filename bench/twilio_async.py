"""The Twilio API stand-in of the benchmark on asyncio (uvloop when installed): the same answers as the
threaded stand-in of the tests (tests/standins/twilio_api.py: the same answer_message and answer_media,
so the same status codes, bodies, Retry-After and injected faults), but at thousands of requests a second
on this machine, so the stand-in is not what limits a raw client or relay.

Why not the threaded one: a thread per connection and http.server's parsing cap it near 700 requests/s
here (docs/scale.md), below what an async client hands off. aiohttp's low-level server is used rather
than an Application (no routing or middleware to pay for on every request).

    AsyncTwilioStandIn(keep=1000).start()  # in a thread of the calling process, like TwilioStandIn
    python -m bench.standins twilio --port P --stats-port S   # as a process (bench/standins.py)
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Callable
from urllib.parse import parse_qsl

from aiohttp import web

from tests.standins.twilio_api import (
    Recorded,
    TwilioStandIn,
    answer_media,
    answer_message,
    basic_auth,
    reply_headers,
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (the benchmark's extras), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AsyncTwilioStandIn(TwilioStandIn):
    """TwilioStandIn's state and fault controls (fail_to, fail_next, add_media, requests, accepted) served
    by an asyncio server. keep: how many requests to remember at most (None: all); on_accept is called for
    every 201 (the benchmark's clock)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep: int | None = None,
                 on_accept: Callable[[], None] | None = None):
        self.requests: list[Recorded] = []
        self.faults_by_to = {}
        self.next_faults = []
        self.media = {}
        self.media_auth = None
        self.media_requests = []
        self.lock = threading.Lock()
        self.keep, self.on_accept = keep, on_accept
        self.host, self.port = host, port
        self.loop = new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.loop.run_until_complete(self._listen())

    async def _listen(self) -> None:
        self._handler = web.Server(self._handle)
        self._server = await self.loop.create_server(self._handler, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        auth = basic_auth(request.headers.get("Authorization", ""))
        if request.method == "GET":
            status, headers, data = answer_media(self, request.raw_path, auth)
            return web.Response(status=status, body=data, headers=headers)
        if request.method != "POST":
            return web.Response(status=405)
        body = await request.read()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        account, status, payload, delay = answer_message(self, request.raw_path, auth, form)
        if delay:
            await asyncio.sleep(delay)
        with self.lock:
            if self.keep is not None and len(self.requests) >= self.keep:
                self.requests.clear()  # memory stays flat over 100,000 messages
            self.requests.append(Recorded(request.raw_path, account, auth, form,
                                          request.headers.get("Content-Type", ""), status))
        if status == 201 and self.on_accept is not None:
            self.on_accept()
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=reply_headers(status))

    def serve_forever(self) -> None:
        self.loop.run_forever()

    def start(self) -> "AsyncTwilioStandIn":
        self._thread = threading.Thread(target=self.serve_forever, name="twilio-async-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        async def close():
            assert self._server is not None
            self._server.close()
            await self._handler.shutdown(1.0)  # kept-alive connections too
            await self._server.wait_closed()

        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        else:
            self.loop.run_until_complete(close())
        self.loop.close()

