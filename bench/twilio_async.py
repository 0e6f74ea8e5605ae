"""The Twilio API stand-in of the benchmark on asyncio (uvloop when installed): the same answers as the
threaded stand-in of the tests (tests/standins/twilio_api.py: the same answer_message and answer_media,
so the same status codes, bodies, Retry-After and injected faults), but at thousands of requests a second
on this machine, so the stand-in is not what limits a raw client or relay.

Why not the threaded one: a thread per connection and http.server's parsing cap it near 700 requests/s
here (docs/scale.md), below what an async client hands off.

Why a plain asyncio protocol and not aiohttp's server (which it was until 2026-12-07): the stand-in shares
this 2-core machine with what it measures, and aiohttp's low-level server (a request object, a
case-insensitive header map, a response object and a task per request) spent 0.18-0.23 ms of CPU a request
under the raw client and ~0.3 ms under relay's workers: in a relay fan-out it took ~0.45 of the two cores,
CPU that Twilio's own servers spend in production. This one reads what a client of the Messages API sends
(a request line, headers, a Content-Length body; keep-alive; HTTP/1.0 and `Connection: close` honoured),
answers through the same answer_message/answer_media, and writes each answer in one write. It refuses
what it does not read (a chunked body: 501; a malformed head: 400) rather than guess.
tests/bench/test_twilio_async.py shows it answers as the threaded stand-in does.

    AsyncTwilioStandIn(keep=1000).start()  # in a thread of the calling process, like TwilioStandIn
    python -m bench.standins twilio --port P --stats-port S   # as a process (bench/standins.py)
"""
from __future__ import annotations

import asyncio
import functools
import json
import threading
from http import HTTPStatus
from typing import Callable
from urllib.parse import parse_qsl

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
        self._connections: set[_Connection] = set()
        self._server = await self.loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes, float]:
        """(status, headers, body, seconds to stall first) for one request, as the threaded stand-in answers."""
        auth = basic_auth(headers.get("authorization", ""))
        if method == "GET":
            status, reply, data = answer_media(self, target, auth)
            return status, reply, data, 0.0
        if method != "POST":
            return 405, {}, b"", 0.0
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        account, status, payload, delay = answer_message(self, target, auth, form)
        with self.lock:
            if self.keep is not None and len(self.requests) >= self.keep:
                self.requests.clear()  # memory stays flat over 100,000 messages
            self.requests.append(Recorded(target, account, auth, form, headers.get("content-type", ""), status))
        if status == 201 and self.on_accept is not None:
            self.on_accept()
        return status, reply_headers(status), json.dumps(payload).encode(), delay

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
            for connection in list(self._connections):  # kept-alive connections too
                connection.close()
            await self._server.wait_closed()

        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        else:
            self.loop.run_until_complete(close())
        self.loop.close()



_HEAD_END = b"\r\n\r\n"
MAX_HEAD = 65_536  # a head longer than this is refused (400) and the connection closed


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


class _Connection(asyncio.Protocol):
    """One client connection: requests read in order from the bytes received, each answered in one write.
    While an answer stalls (an injected delay) the requests behind it wait, as on one HTTP/1.1 connection."""

    def __init__(self, standin: AsyncTwilioStandIn):
        self.standin = standin
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.stalled = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.standin._connections.add(self)

    def connection_lost(self, exc) -> None:
        self.standin._connections.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.stalled:
            self._answer_waiting()

    def _answer_waiting(self) -> None:
        while self.transport is not None and not self.stalled:
            end = self.buffer.find(_HEAD_END)
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._refuse(400, b"request head too long")
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon:
                    self._refuse(400, b"malformed header line")
                    return
                headers[name.strip().lower()] = value.strip()
            if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
                self._refuse(400, b"malformed request line")
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._refuse(501, b"chunked request bodies are not read by this stand-in")
                return
            length_text = headers.get("content-length", "0")
            if not (length_text.isascii() and length_text.isdigit()):  # bytes: no sign, no spaces, nothing else
                self._refuse(400, b"bad Content-Length")
                return
            length = int(length_text)
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            method, target, version = request_line
            keep_alive = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close")
            status, reply, data, delay = self.standin.answer(method, target, headers, body)
            answer = self._answer(status, reply, data, keep_alive)
            if delay:
                self.stalled = True
                self.standin.loop.call_later(delay, self._send_stalled, answer, keep_alive)
                return
            self._send(answer, keep_alive)

    def _answer(self, status: int, headers: dict, data: bytes, keep_alive: bool) -> bytes:
        head = [_status_line(status)]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"Content-Length: %d\r\n" % len(data))
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        return b"".join(head) + data

    def _send(self, answer: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(answer)
        if not keep_alive:
            self.transport.close()
            self.transport = None

    def _send_stalled(self, answer: bytes, keep_alive: bool) -> None:
        self.stalled = False
        self._send(answer, keep_alive)
        self._answer_waiting()

    def _refuse(self, status: int, reason: bytes) -> None:
        self._send(self._answer(status, {"Content-Type": "text/plain"}, reason + b"\n", False), False)
