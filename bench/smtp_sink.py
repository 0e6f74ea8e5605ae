"""The benchmark's SMTP sink: a plain asyncio protocol (on uvloop when installed) that speaks the part of
SMTP a sending client uses — the greeting, EHLO/HELO with aiosmtpd's extensions (SIZE, 8BITMIME, SMTPUTF8),
MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT — with aiosmtpd's replies and its order checks
(503 for MAIL before EHLO, RCPT before MAIL, DATA before RCPT; 500 for an unknown command; 552 over SIZE),
and pipelined commands.

Why by hand and not aiosmtpd: the sink shares this 2-core machine with the client under test, and
aiosmtpd (even on uvloop) spent 0.5-1.2 ms of CPU per message here, more than the aiosmtplib client
sending it (0.3-0.6 ms): the stand-in took the CPU the fan-out needed. This one spends 0.13-0.3 ms (issue
18 item 1: the stand-ins must not be what limits; a real provider's SMTP server is on another machine).
It keeps no TLS, AUTH or address checks: the tests' SMTP server (tests/standins/smtp_sink.py, aiosmtpd)
is the one that checks relay's SMTP; tests/bench/test_smtp_sink.py shows both receive the same envelopes
and bytes.

    LeanSmtpSink(keep=100).start()   # in a thread of the calling process; .port, .received, .count
    python -m bench.standins smtp --port P --stats-port S   # as a process (bench/standins.py)
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

MAX_SIZE = 33_554_432  # aiosmtpd's default data size limit, advertised in EHLO
MAX_LINE = 65_536  # a command line longer than this ends the session
_EHLO = "250-{host}\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n"
_END = b"\r\n.\r\n"


@dataclass
class Envelope:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes = field(repr=False)


def _address(argument: bytes, keyword: bytes) -> str | None:
    """The address of `FROM:<a@b> PARAMS` / `TO:<a@b>` (or, as aiosmtpd takes it, a bare `FROM:a@b`), or
    None when the argument is malformed."""
    if argument[:len(keyword)].upper() != keyword:
        return None
    rest = argument[len(keyword):].strip()
    if rest.startswith(b"<"):
        return rest[1:rest.index(b">")].decode("utf-8", "replace") if b">" in rest else None
    bare = rest.split(b" ", 1)[0]
    return bare.decode("utf-8", "replace") if bare else None


class _Session(asyncio.Protocol):
    def __init__(self, sink: "LeanSmtpSink"):
        self.sink = sink
        self.buffer = b""
        self.greeted = False
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []
        self.in_data = False
        self.scanned = 0  # how far the data has been searched for its end already

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(f"220 {self.sink.host} Python SMTP bench sink\r\n".encode())

    def data_received(self, chunk: bytes) -> None:
        self.buffer += chunk
        replies: list[bytes] = []
        while not self.transport.is_closing():
            if self.in_data:
                end = self.buffer.find(_END, max(0, self.scanned - 4))
                if end < 0:
                    self.scanned = len(self.buffer)
                    if len(self.buffer) > MAX_SIZE + 2:
                        replies.append(b"552 Error: Too much mail data\r\n")
                        self._close(replies)
                    break
                data, self.buffer = self.buffer[2:end + 2], self.buffer[end + len(_END):]  # 2: the CRLF DATA put first
                self.in_data, self.scanned = False, 0
                replies.append(self._message(data))
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 Error: line too long\r\n")
                    self._close(replies)
                break
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2:]
            replies.append(self._command(line))
            if self.in_data:
                self.buffer = b"\r\n" + self.buffer  # so a message's first line "." is found as its end too
            elif replies[-1].startswith(b"221"):
                self._close(replies)
        if replies and not self.transport.is_closing():
            self.transport.write(b"".join(replies))

    def _close(self, replies: list[bytes]) -> None:
        self.transport.write(b"".join(replies))
        replies.clear()
        self.transport.close()

    def _command(self, line: bytes) -> bytes:
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if verb == b"MAIL":
            if not self.greeted:
                return b"503 Error: send HELO first\r\n"
            if self.mail_from is not None:
                return b"503 Error: nested MAIL command\r\n"
            address = _address(argument, b"FROM:")
            if address is None:
                return b"501 Syntax: MAIL FROM: <address>\r\n"
            self.mail_from = address
            return b"250 OK\r\n"
        if verb == b"RCPT":
            if self.mail_from is None:
                return b"503 Error: need MAIL command\r\n"
            address = _address(argument, b"TO:")
            if address is None:
                return b"501 Syntax: RCPT TO: <address>\r\n"
            self.rcpt_tos.append(address)
            return b"250 OK\r\n"
        if verb == b"DATA":
            if not self.rcpt_tos:
                return b"503 Error: need RCPT command\r\n"
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"EHLO" or verb == b"HELO":
            if not argument.strip():
                return b"501 Syntax: " + verb + b" hostname\r\n"
            self.greeted = True
            self._reset()
            return _EHLO.format(host=self.sink.host).encode() if verb == b"EHLO" else f"250 {self.sink.host}\r\n".encode()
        if verb == b"RSET":
            self._reset()
            return b"250 OK\r\n"
        if verb == b"NOOP":
            return b"250 OK\r\n"
        if verb == b"QUIT":
            return b"221 Bye\r\n"
        return b'500 Error: command "' + verb[:32] + b'" not recognized\r\n'

    def _message(self, data: bytes) -> bytes:
        if b"\r\n.." in data or data.startswith(b".."):  # dot-unstuffing (RFC 5321 4.5.2)
            data = data[1:] if data.startswith(b"..") else data
            data = data.replace(b"\r\n..", b"\r\n.")
        self.sink.accept(Envelope(self.mail_from or "", self.rcpt_tos, data))
        self._reset()
        return b"250 Message accepted for delivery\r\n"

    def _reset(self) -> None:
        self.mail_from, self.rcpt_tos = None, []


class LeanSmtpSink:
    """Counts the messages it accepts, keeps the last `keep` (None: all) and calls on_message for each."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep: int | None = None,
                 on_message: Callable[[Envelope], None] | None = None):
        self.host, self.port = host, port
        self.received: deque[Envelope] = deque(maxlen=keep)
        self.count = 0
        self.on_message = on_message
        self.lock = threading.Lock()
        from bench.twilio_async import new_event_loop

        self.loop = new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def accept(self, envelope: Envelope) -> None:
        with self.lock:
            self.count += 1
            self.received.append(envelope)
        if self.on_message is not None:
            self.on_message(envelope)

    def _bind(self) -> None:
        self._server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Session(self), self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "LeanSmtpSink":
        """Serve from a daemon thread of this process."""
        self._bind()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="smtp-sink")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._bind()
        self.loop.run_forever()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(5)
