"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives and counts sessions, and can
refuse chosen recipients with a given reply (4xx or 5xx)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes = field(repr=False)
    session: int = 0

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler:
    def __init__(self, sink: "SmtpSink"):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.sink.lock:
            self.sink.sessions += 1
            session.relay_session = self.sink.sessions
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                               getattr(session, "relay_session", 0)))
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self):
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}
        self.sessions = 0
        self.lock = threading.Lock()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=_free_port())

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> None:
        """Start afresh on the same port: every client connection dropped, nothing received, no session
        counted (clients that keep connections, like relay's SMTP pool, must reconnect)."""
        port = self.controller.port
        self.controller.stop()
        with self.lock:
            self.received.clear()
            self.refuse.clear()
            self.sessions = 0
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=port)
        self.controller.start()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
