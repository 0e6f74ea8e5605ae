"""Outbound email over SMTP with aiosmtplib, one connection kept open per worker process and
reused for every message (no new SMTP session per message).

RELAY_SMTP_URL: smtp://user:password@host:587?starttls=1 (STARTTLS), smtps://host:465 (implicit
TLS), smtp://host:25 (plain, for a local MTA). Replies 4xx are retryable; 5xx fail the delivery with
the server's reply stored.

Every message goes out with its delivery's own VERP envelope sender (MAIL FROM) and signed
X-Relay-Delivery header (relay/providers/verp.py), so that a bounce can be believed for that delivery only.
The receiving MTA turns the envelope sender into Return-Path; relay never writes Return-Path itself."""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from relay.infra.eventloop import shared_loop
from relay.infra.ratelimit import smtp_rate, take_slot
from relay.model.messages import OutboundMessage, SendError, SendResult
from relay.providers.smtp_transaction import send_one
from relay.providers.verp import stamp

log = logging.getLogger(__name__)

TRUE = {"1", "true", "yes", "on"}
SMTP_POOL_SIZE = 4  # connections per worker process at most: listmonk-like, well under servers' per-IP limits


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None  # None: use STARTTLS if the server offers it
    timeout: float


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"RELAY_SMTP_URL: expected smtp://host:port or smtps://host:port, got {url!r}")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    use_tls = parts.scheme == "smtps"
    start_tls = None
    if "starttls" in query:
        start_tls = query["starttls"] in TRUE
    return SmtpTarget(hostname=parts.hostname, port=parts.port or (465 if use_tls else 587 if start_tls else 25),
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      use_tls=use_tls, start_tls=False if use_tls else start_tls,
                      timeout=float(query.get("timeout", "30")))


def classify(exc: Exception) -> SendError:
    """SMTP replies 4xx (and lost connections) are worth retrying; 5xx are final."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"SMTP {exc.code} {exc.message}".strip()
        return SendError(text, code=str(exc.code), retryable=400 <= exc.code < 500)
    return SendError(f"SMTP unreachable: {type(exc).__name__}: {exc}", code="network", retryable=True)


class SmtpEmailSender:
    """Thread-safe facade over one asyncio loop (in a daemon thread) holding a small pool of SMTP
    connections: one thread sending in turn uses one connection; several threads (the bulk sender)
    send over up to `pool_size` connections at once, each reused for message after message."""

    name = "smtp"

    def __init__(self, settings, limiter=None, pool_size: int = SMTP_POOL_SIZE):
        self.target = parse_smtp_url(settings.smtp_url)
        self.settings = settings  # the envelope sender is per delivery: verp.stamp
        self.limiter = limiter  # shared provider rate limit (relay/infra/ratelimit.py); None: no limit
        self.rate = smtp_rate(settings.smtp_rate)
        self.rate_key = f"smtp:{self.target.hostname}:{self.target.port}"
        self.pool_size = max(1, pool_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[aiosmtplib.SMTP] = []
        self._open = 0
        self._available: asyncio.Condition | None = None
        self._lock = threading.Lock()
        self.sessions_opened = 0

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                # the process's loop (relay/infra/eventloop.py): the bulk sender awaits send_async on it too
                self._loop = shared_loop()
            return self._loop

    async def _connect(self) -> aiosmtplib.SMTP:
        t = self.target
        smtp = aiosmtplib.SMTP(hostname=t.hostname, port=t.port, use_tls=t.use_tls, start_tls=t.start_tls,
                               timeout=t.timeout)
        await smtp.connect()
        if t.username:
            await smtp.login(t.username, t.password or "")
        self.sessions_opened += 1
        return smtp

    async def _checkout(self) -> aiosmtplib.SMTP | None:
        """An idle connection, or None when the caller may open a new one (a pool slot is its)."""
        if self._idle:  # the usual case in a broadcast: no waiting, so no lock (one loop, no await before the pop)
            return self._idle.pop()
        if self._available is None:
            self._available = asyncio.Condition()
        async with self._available:
            while not self._idle and self._open >= self.pool_size:
                await self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
            return None

    async def _checkin(self, smtp: aiosmtplib.SMTP | None) -> None:
        assert self._available is not None  # made by the _checkout that gave out this connection
        async with self._available:
            if smtp is not None and smtp.is_connected:
                self._idle.append(smtp)
            else:
                self._open -= 1
            self._available.notify()

    async def _send(self, sender: str, to: str, raw: bytes) -> None:
        smtp = await self._checkout()
        try:
            for attempt in (1, 2):
                if smtp is None or not smtp.is_connected:
                    smtp = await self._connect()
                try:
                    # an 8bit body (bulk notices are rendered once, sent unencoded) is declared as such
                    options = ["BODY=8BITMIME"] if not raw.isascii() and smtp.supports_extension("8bitmime") else []
                    await send_one(smtp, sender, to, raw, options)  # sendmail() without re-parsing our addresses
                    return
                except aiosmtplib.SMTPServerDisconnected:
                    smtp = None  # the server closed an idle connection: reconnect once
                    if attempt == 2:
                        raise
                except aiosmtplib.SMTPResponseException:
                    smtp = await self._reset(smtp)
                    raise
        finally:
            await self._checkin(smtp)

    async def _reset(self, smtp: aiosmtplib.SMTP) -> aiosmtplib.SMTP | None:
        try:
            if smtp.is_connected:
                await smtp.rset()
                return smtp
        except aiosmtplib.SMTPException:
            pass
        return None

    def send(self, message: OutboundMessage) -> SendResult:
        if message.raw is None:
            raise SendError("no email body to send", code="compose")
        if self.limiter is not None and self.rate is not None:
            take_slot(self.limiter, self.rate_key, self.rate, message)  # may say: come back for a booked slot
        sender, raw = stamp(self.settings, message.delivery_id, message.raw)
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._send(sender, message.to, raw), loop)
        try:
            future.result(timeout=self.target.timeout * 3)
        except Exception as exc:
            raise classify(exc) from exc
        return self._result(message)

    @staticmethod
    def _result(message: OutboundMessage) -> SendResult:
        # A post's Message-ID is shared by all its recipients; the delivery's own id names this send.
        return SendResult(provider_message_id=f"smtp-{message.delivery_id}", provider_status="sent")

    async def send_async(self, message: OutboundMessage) -> SendResult:
        """send(), as a coroutine on the process's loop (relay/infra/eventloop.py; the bulk sender,
        relay/outbound/async_batch.py): the same slot, envelope, connection pool and errors, no thread."""
        if message.raw is None:
            raise SendError("no email body to send", code="compose")
        self._ensure_loop()
        if self.limiter is not None and self.rate is not None:  # a Redis call that may wait for the slot
            await asyncio.to_thread(take_slot, self.limiter, self.rate_key, self.rate, message)
        sender, raw = stamp(self.settings, message.delivery_id, message.raw)
        try:
            async with asyncio.timeout(self.target.timeout * 3):  # as wait_for, without a task per message
                await self._send(sender, message.to, raw)
        except Exception as exc:
            raise classify(exc) from exc
        return self._result(message)

    def close(self) -> None:
        if self._loop is None:
            return

        async def quit_():
            for smtp in self._idle:
                if smtp.is_connected:
                    try:
                        await smtp.quit()
                    except aiosmtplib.SMTPException:
                        pass
            self._open -= len(self._idle)  # their pool slots are free again (the loop outlives this close)
            self._idle.clear()

        asyncio.run_coroutine_threadsafe(quit_(), self._loop).result(timeout=10)
        self._loop = None  # the loop is the process's (relay/infra/eventloop.py): it stays for other senders
