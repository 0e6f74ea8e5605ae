"""The provider stand-ins as processes for the benchmark, each with a small stats endpoint
(GET /stats: count, first and last arrival; POST /reset) so run.py can time messages at the
provider without keeping them in its own memory.

    python -m bench.standins twilio --port P --stats-port S
    python -m bench.standins smtp --port P --stats-port S
    python -m bench.standins twilio-threaded --port P --stats-port S
    python -m bench.standins smtp-aiosmtpd --port P --stats-port S

`twilio` is the asyncio stand-in (bench/twilio_async.py), thousands of requests/s here; `twilio-threaded`
is the tests' threaded one (tests/standins/twilio_api.py), which caps a client near 700/s. `smtp` is the
lean asyncio sink (bench/smtp_sink.py, 0.13-0.3 ms of CPU a message here); `smtp-aiosmtpd` the aiosmtpd
sink the bench used before it (0.5-1.2 ms a message), kept to compare (BENCH_SMTP_SINK=aiosmtpd).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Clock:
    """Counts arrivals and keeps the first and last arrival times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.count, self.first, self.last = 0, None, None

    def tick(self):
        now = time.time()
        with self.lock:
            self.count += 1
            self.first = self.first or now
            self.last = now

    def stats(self) -> dict:
        with self.lock:
            return {"count": self.count, "first": self.first, "last": self.last}

    def clear(self) -> None:
        with self.lock:
            self.reset()


def stats_in_background(port: int, clock: Clock) -> None:
    """The clock's stats endpoint (serve_stats) from a daemon thread."""
    threading.Thread(target=serve_stats, args=(port, clock.stats, clock.clear), daemon=True).start()


def serve_stats(port: int, stats, reset) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, payload):
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._json(stats())

        def do_POST(self):
            reset()
            self._json({"reset": True})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.1)


def run_twilio(port: int, stats_port: int) -> None:
    from bench.twilio_async import AsyncTwilioStandIn

    clock = Clock()
    standin = AsyncTwilioStandIn(port=port, keep=1000, on_accept=clock.tick)
    stats_in_background(stats_port, clock)
    print(f"twilio stand-in (asyncio) on {port}, stats on {stats_port}", flush=True)
    standin.serve_forever()


def run_twilio_threaded(port: int, stats_port: int) -> None:
    from tests.standins.twilio_api import TwilioStandIn

    standin = TwilioStandIn(port=port)
    clock = Clock()

    # count accepted messages as they arrive (the stand-in's own list is cleared on reset)
    original = standin.server.RequestHandlerClass._record

    def _record(handler, account, auth, form, status):
        if status == 201:
            clock.tick()
        with standin.lock:
            if len(standin.requests) > 1000:  # keep memory flat over 100,000 messages
                standin.requests.clear()
        original(handler, account, auth, form, status)

    standin.server.RequestHandlerClass._record = _record
    stats_in_background(stats_port, clock)
    print(f"twilio stand-in on {port}, stats on {stats_port}", flush=True)
    standin.server.serve_forever(poll_interval=0.05)


def run_smtp(port: int, stats_port: int) -> None:
    from bench.smtp_sink import LeanSmtpSink

    clock = Clock()
    sink = LeanSmtpSink(port=port, keep=0, on_message=lambda envelope: clock.tick())
    stats_in_background(stats_port, clock)
    print(f"smtp sink (asyncio) on {port}, stats on {stats_port}", flush=True)
    sink.serve_forever()


def run_smtp_aiosmtpd(port: int, stats_port: int) -> None:
    from aiosmtpd.controller import Controller

    clock = Clock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            clock.tick()
            return "250 Message accepted for delivery"

    # On uvloop, as the Twilio stand-in (issue 18: the stand-ins must not be what limits): on asyncio's own loop
    # this sink took ~1,400 messages/s here and capped relay and the raw client alike.
    import uvloop

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, loop=uvloop.new_event_loop())
    controller.start()
    print(f"smtp sink on {port}, stats on {stats_port}", flush=True)
    serve_stats(stats_port, clock.stats, clock.clear)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("twilio", "twilio-threaded", "smtp", "smtp-aiosmtpd"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    args = parser.parse_args()
    runs = {"twilio": run_twilio, "twilio-threaded": run_twilio_threaded, "smtp": run_smtp,
            "smtp-aiosmtpd": run_smtp_aiosmtpd}
    runs[args.kind](args.port, args.stats_port)


if __name__ == "__main__":
    main()
