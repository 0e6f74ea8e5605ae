"""The ingest workload's load: signed Twilio webhooks from CONNECTIONS concurrent connections, each
sending its next request as soon as the previous answer has been read (a closed loop), for a fixed
time; every request's latency from the first byte written to the last byte of the answer read.

Hand-written on asyncio streams (uvloop when installed) rather than aiohttp: the client shares this
2-core machine with the server it measures, and its CPU per request is taken from the server's. With
aiohttp it cost ~0.6-0.9 ms per request, as much as the bare handler's whole server; writing each
pre-built request as one buffer and reading the answer by Content-Length costs a fraction of that,
so more of the machine is left to the server under test (both servers alike), and the loop's own
delays weigh less in the latencies. gunicorn's sync workers close the connection after each answer,
so every request opens its own, as with aiohttp against them."""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

PATH = "/webhooks/twilio/sms"


def requests_for(base_url: str, bodies: list[tuple[bytes, str]]) -> list[bytes]:
    """Each (form body, signature) as the whole HTTP request, built before the clock starts."""
    host = urlsplit(base_url).netloc
    return [(f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             f"X-Forwarded-Proto: https\r\nX-Forwarded-Host: relay.example.org\r\nX-Twilio-Signature: {signature}\r\n"
             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
            for body, signature in bodies]


async def _exchange(host: str, port: int, request: bytes) -> int:
    """Send one request on a new connection; the answer's status once its body is read."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            await reader.read()  # until the server closes
        else:
            await reader.readexactly(length)
        return status
    finally:
        writer.close()


async def _run(base_url: str, requests: list[bytes], seconds: float, connections: int) -> dict:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = 0
    index = 0
    deadline = time.perf_counter() + seconds

    async def one_connection():
        nonlocal index, errors
        while time.perf_counter() < deadline and index < len(requests):
            request = requests[index]
            index += 1
            started = time.perf_counter()
            try:
                ok = await _exchange(host, port, request) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    cpu_started = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    latencies.sort()
    count = len(latencies)
    return {"requests": count, "errors": errors, "seconds": round(elapsed, 2), "rps": round(count / elapsed, 1),
            "p50_ms": round(latencies[count // 2] * 1000, 1), "p99_ms": round(latencies[int(count * 0.99)] * 1000, 1),
            "client_cpu_ms_per_request": round(cpu * 1000 / max(1, count), 3)}


def load(base_url: str, requests: list[bytes], seconds: float, connections: int) -> dict:
    """Run the closed loop for `seconds`; requests, errors (not 200), rate, p50 and p99, and the client's
    own CPU per request."""
    from bench.twilio_async import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(_run(base_url, requests, seconds, connections))
    finally:
        loop.close()
