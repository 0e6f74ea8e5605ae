"""A Twilio REST API stand-in on loopback: records Messages.json POSTs and can answer with
Twilio's error responses (21610, 21211, 20429, 5xx) or stall, so sends are tested over real HTTP.
It also serves MMS media (GET .../Messages/MM.../Media/ME...) added with add_media(): checking HTTP
basic auth (account SID + auth token, when media_auth is set), failing a given number of times first.

Run beside the tests in a thread (TwilioStandIn().start()) or as a process:
    python -m tests.standins.twilio_api --port 8081
"""
from __future__ import annotations

import argparse
import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from tests.standins import twilio_voice  # issue 17: Calls.json and the Gather callback

MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


@dataclass
class Recorded:
    path: str
    account_sid: str
    auth: tuple[str, str]
    form: dict[str, str]
    content_type: str
    status: int
    at: float = field(default_factory=time.time)


@dataclass
class Media:
    data: bytes
    content_type: str
    fail_times: int = 0  # answer 500 this many times first
    fail_status: int = 500
    requests: int = 0
    redirect_to: str = ""  # answer 307 to this URL instead (as Twilio does, to its media CDN)


@dataclass
class Fault:
    status: int
    code: int | None = None
    message: str = ""
    delay: float = 0.0  # seconds to stall before answering (timeouts)
    times: int = 1_000_000  # how many requests it applies to


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connect at once (the bulk sender); the default 5 resets them
    daemon_threads = True


def basic_auth(header: str) -> tuple[str, str]:
    """(user, password) of an HTTP Basic Authorization header, ("", "") otherwise."""
    if header.startswith("Basic "):
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password
    return "", ""


def reply_headers(status: int) -> dict[str, str]:
    """The headers of a JSON reply besides its length (a 429 says when to come back, as Twilio's do)."""
    return {"Content-Type": "application/json", **({"Retry-After": "1"} if status == 429 else {})}


def answer_message(standin: "TwilioStandIn", path: str, auth: tuple[str, str],
                   form: dict[str, str]) -> tuple[str, int, dict, float]:
    """What the Messages API answers to one POST: (account, status, JSON payload, seconds to stall
    first). Shared by this threaded stand-in and the asyncio one of the benchmark (bench/twilio_async.py),
    so both answer alike: 404 for another resource, 401 for another account, 400 without To, an
    injected fault, else 201 with the message."""
    parts = path.split("/")
    account = parts[3] if len(parts) > 4 else ""
    if not (path == MESSAGES_PATH.format(sid=account) and account.startswith("AC")):
        return account, 404, {"code": 20404, "message": "not found", "status": 404}, 0.0
    if auth[0] != account:
        return account, 401, {"code": 20003, "message": "Authenticate", "status": 401}, 0.0
    if not form.get("To"):
        return account, 400, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}, 0.0
    fault = standin._fault_for(form.get("To", ""))
    if fault is not None:
        return account, fault.status, {"code": fault.code, "message": fault.message or "error",
                                       "more_info": f"https://www.twilio.com/docs/errors/{fault.code}",
                                       "status": fault.status}, fault.delay
    sid = "SM" + secrets.token_hex(16)
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return account, 201, {
        "sid": sid, "account_sid": account, "to": form.get("To"),
        "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
        "body": form.get("Body"), "status": "queued", "num_segments": "1", "num_media": "0",
        "direction": "outbound-api", "api_version": "2010-04-01", "price": None,
        "price_unit": "USD", "error_code": None, "error_message": None,
        "date_created": now, "date_updated": now, "date_sent": None,
        "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json", "subresource_uris": {},
    }, 0.0


def answer_media(standin: "TwilioStandIn", path: str, auth: tuple[str, str]) -> tuple[int, dict[str, str], bytes]:
    """What a GET of MMS media answers: (status, headers, body); shared like answer_message."""
    with standin.lock:
        media = standin.media.get(path)
        if media is None:
            status = 404
        elif standin.media_auth is not None and auth != standin.media_auth:
            status = 401
        elif media.fail_times > 0:
            media.fail_times -= 1
            status = media.fail_status
        elif media.redirect_to:
            status = 307
        else:
            status = 200
        if media is not None:
            media.requests += 1
        standin.media_requests.append((path, auth, status))
    if status == 307:
        return 307, {"Location": media.redirect_to}, b""
    if status != 200:
        error = {"code": 20404 if status == 404 else None, "message": "error", "status": status}
        return status, reply_headers(status), json.dumps(error).encode()
    return 200, {"Content-Type": media.content_type}, media.data


class TwilioStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[Recorded] = []
        self.faults_by_to: dict[str, Fault] = {}
        self.next_faults: list[Fault] = []
        self.media: dict[str, Media] = {}
        self.media_auth: tuple[str, str] | None = None  # (account SID, auth token) media needs
        self.media_requests: list[tuple[str, tuple[str, str], int]] = []  # (path, auth, status)
        self.calls: list[twilio_voice.Call] = []  # issue 17: calls placed through Calls.json
        self.lock = threading.Lock()
        self.server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "TwilioStandIn":
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_to(self, to: str, status: int, code: int | None = None, message: str = "", times: int = 1_000_000):
        self.faults_by_to[to] = Fault(status, code, message, times=times)

    def fail_next(self, status: int, code: int | None = None, message: str = "", delay: float = 0.0):
        self.next_faults.append(Fault(status, code, message, delay, times=1))

    def add_media(self, account_sid: str, data: bytes, content_type: str = "image/jpeg", fail_times: int = 0,
                  fail_status: int = 500, redirect_to: str = "") -> str:
        """Serve `data` as one MMS media item; returns its URL (as Twilio puts it in MediaUrlN)."""
        path = (f"/2010-04-01/Accounts/{account_sid}/Messages/MM{secrets.token_hex(16)}"
                f"/Media/ME{secrets.token_hex(16)}")
        with self.lock:
            self.media[path] = Media(data, content_type, fail_times, fail_status, redirect_to=redirect_to)
        return self.url + path

    @property
    def accepted(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.status == 201]

    def call_fault(self, to: str) -> Fault | None:
        """issue 17: the fault a call to `to` meets (the same fail_to/fail_next as messages)."""
        return self._fault_for(to)

    def _fault_for(self, to: str) -> Fault | None:
        with self.lock:
            if self.next_faults:
                return self.next_faults.pop(0)
            fault = self.faults_by_to.get(to)
            if fault and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, payload: dict):
                body = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in reply_headers(status).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _auth(self) -> tuple[str, str]:
                return basic_auth(self.headers.get("Authorization", ""))

            def do_GET(self):
                status, headers, body = answer_media(standin, self.path, self._auth())
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-request (a worker killed with -9): nothing sent
                    self.close_connection = True
                    return
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                auth = basic_auth(self.headers.get("Authorization", ""))
                parts = self.path.split("/")
                account = parts[3] if len(parts) > 4 else ""
                if self.path == twilio_voice.CALLS_PATH.format(sid=account) and account.startswith("AC"):
                    return twilio_voice.answer_call(self, standin, account, auth, form)  # issue 17
                account, status, payload, delay = answer_message(standin, self.path, auth, form)
                if delay:
                    time.sleep(delay)
                self._record(account, auth, form, status)
                self._reply(status, payload)

            def _record(self, account, auth, form, status):
                with standin.lock:
                    standin.requests.append(Recorded(self.path, account, auth, form,
                                                     self.headers.get("Content-Type", ""), status))

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    standin = TwilioStandIn(port=args.port)
    print(f"Twilio stand-in at {standin.url}", flush=True)
    standin.server.serve_forever()


if __name__ == "__main__":
    main()
