"""`make bench`: relay's speed on this machine, as ratios against the raw limit measured in the same run.

Starts on loopback everything it needs (a fresh PostgreSQL database per workload on the local server,
Redis with a private key prefix, the Twilio API stand-in on asyncio (bench/twilio_async.py: thousands of
requests/s, so it is not the limit) and an SMTP sink (bench/smtp_sink.py: 0.13-0.3 ms of CPU a message,
where aiosmtpd took 0.5-1.2 ms) as their own processes, relay's web app under
granian (BENCH_WEB_SERVER=gunicorn: gunicorn), Celery workers) and runs:

  ingest   signed Twilio inbound webhooks at 32 connections against relay web, vs a bare Flask handler
           parsing the same form under the same server and settings. The webhooks are realistic: replies
           from 5,000 known SMS members, each on a case it follows with three others (bench/seed.py
           seed_repliers), so each one is posted and relayed to the case's other followers. Afterwards
           a `relay worker -Q inbound,outbound -c 2` processes them (and sends the relays): its rate
           against the ingest rate (inbound processing >= 0.8 is the target), posts, relays, outcomes
  fanout   one notice to N members (40 % SMS, 40 % email, 20 % both) from "send" to the last message
           at the stand-ins, vs the machine's limit measured in the same run: the same number of
           pre-built messages pushed straight at them by the best raw clients (bench/raw_limit.py:
           aiohttp posting Messages.json forms over 32 kept-alive connections and aiosmtplib over 8
           reused connections, in one event loop; the median of three pushes, each rate reported);
           beside it, for information, the same push with relay's own provider clients on the
           workers' processes x threads (bench/raw_send.py). CPU milliseconds per message of the
           worker's processes and of the raw client; peak RSS
  email    the same for one notice to 7,400 email-only members (personalised: each email carries the
           member's own tokens), against aiosmtplib alone; quoted beside GNU Mailman 3's personalised
           delivery to 7,400 members on this kind of machine (99-149 s)
  latency  send -> first message at a stand-in, with the N=largest notice queued
  digest   daily digests for 20,000 confirmed subscribers (bench/seed.py: zones spread over the world,
           each due at the moment of the run; half members, half web subscribers; a day of cases,
           guideline changes and posts), from publishing relay.send_digests (as beat does) to a
           `relay worker -Q maintenance,bulk,outbound -c 2` until the last email at the SMTP sink;
           peak RSS of the worker's processes. Baseline (bench/raw_digests.py): the same processes x
           threads, each process rendering its share of the same emails in a plain loop (the same
           templates and content through relay.digests.building.render, the same MIME message through
           relay.render.mail.compose_message, per subscriber) and handing each to a thread pool that sends it with
           relay's SMTP client, timed from the start signal to the last arrival. Afterwards the
           database must hold exactly one digest per subscriber for the period and the sink exactly
           one email each; the table says MISMATCH otherwise. Also reported: the templates alone
           (render_only_per_s: relay.digests.building.render in one process, no MIME, no send).
  reach    the console's Reach page on a year of data (bench/reach.py): 100,000 members, 3,000,000
           deliveries, 100,000 replies, a year of daily views and readers in a database of its own, the
           sweeper's rollups brought up to date, then the median of five loads of each period (30 days,
           12 months) through the Flask app; the target is under 300 ms (issue 20). No stand-ins needed.

Prints one table and writes var/bench/latest.json. BENCH_QUICK=1: smaller N (digest: 4,000 subscribers)
and shorter ingest. BENCH_ONLY=digest (a comma list of ingest, fanout, email, digest, reach; default all) runs only
those workloads: `BENCH_ONLY=digest make bench BENCH_QUICK=1`. BENCH_SEND_ASYNC=off runs relay's bulk
sends on threads (RELAY_SEND_ASYNC=off) instead of the event loop, to compare; BENCH_SMTP_SINK=aiosmtpd
uses the aiosmtpd sink the bench had before issue 18's lean one. For experiments: BENCH_SIZES=10000 (the
fan-out's member counts, a comma list) and BENCH_WORKERS=3 (the worker's pool processes, default 2).
Environment: BENCH_POSTGRES_URL (admin URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13)."""
from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.phases import Phases  # noqa: E402
from relay.cli.common import WEB_SERVERS, granian_options, gunicorn_options, web_defaults  # noqa: E402
from tests.e2e.processes import (
    Processes,
    free_port,
    group_pids,
    relay_command,
    relay_env,
    wait_for_health,
    wait_for_log,  # noqa: E402
)

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES = (tuple(int(n) for n in os.environ["BENCH_SIZES"].split(",")) if os.environ.get("BENCH_SIZES")
         else (2_000, 10_000) if QUICK else (10_000, 100_000))
INGEST_SECONDS = 5 if QUICK else 30
CONNECTIONS = 32
INGEST_CLIENT = os.environ.get("BENCH_INGEST_CLIENT", "streams")  # aiohttp: the load client before issue 18 item 5
REPLIERS = 5_000  # members whose replies the ingest workload posts (bench/seed.py seed_repliers)
PROCESSING_WAIT = 10 if QUICK else 30  # seconds the ingest workload lets the worker process what it stored (a rate:
# 30 s of it is thousands of events; 60 s, as before issue 18 item 6, measured the same rate for twice the time)
# The server and its settings for relay's web and the bare baseline alike: `relay web --server S`'s defaults.
# granian since issue 18 item 5 (docs/scale.md, "The web server"); BENCH_WEB_SERVER=gunicorn measures the other.
WEB_SERVER = os.environ.get("BENCH_WEB_SERVER", "granian")
if WEB_SERVER not in WEB_SERVERS:
    raise SystemExit(f"BENCH_WEB_SERVER must be {' or '.join(WEB_SERVERS)}, not {WEB_SERVER!r}")
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "0")) or web_defaults(WEB_SERVER)[0]
WEB_THREADS = int(os.environ.get("BENCH_WEB_THREADS", "0")) or web_defaults(WEB_SERVER)[1]
WORKER_PROCESSES = int(os.environ.get("BENCH_WORKERS", "2"))  # prefork children of one `relay worker`, as on this 2-core machine
SEND_THREADS = 16
# The limit is the median of this many pushes of the sample (an even count: the slower middle one), each from
# a fresh process: one push is 2-3 s, and on this 2-core machine one push's rate moved by a fifth or more
# between pushes a minute apart (1,210-5,540 msg/s for the same 12,000 messages on one host, 2026-12-07),
# more than relay's own runs did
RAW_LIMIT_PUSHES = max(1, int(os.environ.get("BENCH_RAW_PUSHES", "3")))
RAW_SAMPLE = 4_000 if QUICK else 12_000  # messages the machine's-limit baseline pushes at most (its rate is per message)
OWN_CLIENTS_SAMPLE = 2_000 if QUICK else 4_000  # messages relay's own clients push at most (for information; per message likewise)
RAW_DIGEST_SAMPLE = 2_000 if QUICK else 2_500  # digests the raw digest baseline renders and sends at most (likewise:
# 2,500 take ~12 s here, a steady rate; 5,000 took twice that for the same figure)
DIGEST_SUBSCRIBERS = 4_000 if QUICK else 20_000
EMAIL_ONLY_MEMBERS = 7_400  # the email-only fan-out: the size of the Mailman comparison
MAILMAN_SECONDS = (99, 149)  # GNU Mailman 3.3.10, personalised (VERP) delivery to 7,400 members (issue 18)
SEND_ASYNC = os.environ.get("BENCH_SEND_ASYNC", "on")  # off: relay's bulk sends on threads, as before issue 18
SMTP_SINK = os.environ.get("BENCH_SMTP_SINK", "lean")  # aiosmtpd: the sink before issue 18's lean one
if SMTP_SINK not in ("lean", "aiosmtpd"):
    raise SystemExit(f"BENCH_SMTP_SINK must be lean or aiosmtpd, not {SMTP_SINK!r}")
WORKLOADS = ("ingest", "fanout", "email", "digest", "reach")
ONLY = [w.strip() for w in os.environ.get("BENCH_ONLY", "").split(",") if w.strip()] or list(WORKLOADS)
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
OUR_NUMBER = "+15005550006"
PUBLIC_BASE = "https://relay.example.org"
OUT = REPO / "var" / "bench"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self):
        self.run_id = secrets.token_hex(4)
        self.processes = Processes(OUT / "logs")
        self.databases: list[str] = []
        self.prefix = f"relay-bench-{self.run_id}:"
        self.admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.phase = Phases(log)  # where the run's time goes (bench/phases.py)

    # ------------------------------------------------------------ set-up

    def database(self, name: str) -> str:
        from relay.infra.migrate import upgrade

        db = f"relay_bench_{self.run_id}_{name}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        self.databases.append(db)
        url = make_url(ADMIN_URL).set(database=db).render_as_string(hide_password=False)
        upgrade(url)
        return url

    def drop(self, url: str) -> None:
        """Once a workload is measured and its worker stopped: empty the run's broker keys, drop its database and
        CHECKPOINT. Left, they ran under the next workload: the ingest's relays still queued when its worker
        stopped (~540 bulk tasks) were taken by the next worker, the fan-out to 10,000's, against that workload's
        database (0.44-0.47 of the limit in full runs, against 0.54-0.67 run alone); and the database's
        autovacuum and the checkpoint of what it wrote ran under it."""
        self.purge_broker()
        db = make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(text("CHECKPOINT"))
        self.databases.remove(db)

    def purge_broker(self) -> None:
        """Delete this run's keys in Redis (its queues, the doorbell): nothing queued outlives its workload."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{self.prefix}*"):
            client.delete(key)
        client.close()

    def start_standins(self) -> None:
        self.twilio_port, self.twilio_stats = free_port(), free_port()
        self.smtp_port, self.smtp_stats = free_port(), free_port()
        py = [sys.executable, "-m", "bench.standins"]
        self.twilio = self.processes.start("twilio-standin", py + ["twilio", "--port", str(self.twilio_port),
                                                                   "--stats-port", str(self.twilio_stats)], os.environ)
        sink = "smtp" if SMTP_SINK == "lean" else "smtp-aiosmtpd"
        self.smtp = self.processes.start("smtp-sink", py + [sink, "--port", str(self.smtp_port),
                                                          "--stats-port", str(self.smtp_stats)], os.environ)
        for port in (self.twilio_stats, self.smtp_stats):
            self._wait(lambda p=port: self._get(p), 20, "stand-in stats")

    def _get(self, port: int):
        try:
            return requests.get(f"http://127.0.0.1:{port}/stats", timeout=2).json()
        except requests.RequestException:
            return None

    def stats(self) -> tuple[dict, dict]:
        return self._get(self.twilio_stats), self._get(self.smtp_stats)

    def reset(self) -> None:
        for port in (self.twilio_stats, self.smtp_stats):
            requests.post(f"http://127.0.0.1:{port}/stats", timeout=2)

    @staticmethod
    def _wait(predicate, timeout: float, what: str, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out waiting for {what}")

    def env(self, database_url: str, **extra) -> dict[str, str]:
        return relay_env(DATABASE_URL=database_url, BROKER_URL=REDIS_URL, BROKER_PREFIX=self.prefix,
                         PUBLIC_BASE_URL=PUBLIC_BASE, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                         TWILIO_FROM=OUR_NUMBER, TWILIO_NUMBERS=OUR_NUMBER,
                         TWILIO_API_URL=f"http://127.0.0.1:{self.twilio_port}",
                         SMTP_URL=f"smtp://127.0.0.1:{self.smtp_port}", SMS_RATE="0",
                         SEND_CONCURRENCY=str(SEND_THREADS), SEND_ASYNC=SEND_ASYNC, VAR_DIR=str(OUT / "var"),
                         SECRET_KEY="bench-secret-key", LOG_LEVEL="WARNING", **extra)

    def settings(self, database_url: str):
        from relay.infra.settings import Settings

        return Settings.from_env(self.env(database_url))

    def worker(self, name: str, database_url: str, queues: str, settle: bool = True):
        """A `relay worker` on `queues`, once it says ready and (settle) its pool processes are done starting
        up. Not for a worker started on a backlog (the ingest's): it is busy from its first second."""
        proc = self.processes.start(name, relay_command("worker", "-Q", queues, "-c", str(WORKER_PROCESSES),
                                                        "--loglevel", "INFO"), self.env(database_url))
        wait_for_log(proc, "ready.", timeout=60)
        if settle:
            wait_until_idle(group_pids(proc.pgid))
        return proc

    def close(self) -> None:
        self.processes.stop_all()
        with self.admin.connect() as conn:
            for db in self.databases:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        self.admin.dispose()
        self.purge_broker()


def cpu_seconds(pids) -> float:
    """User + system CPU time of the live processes `pids` (from /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pids, quiet: float = 0.3, timeout: float = 10.0) -> float:
    """Wait until the processes `pids` spend no CPU for `quiet` seconds; returns the seconds waited. Celery
    says "ready." while its pool processes are still loading their provider clients (~0.2 s of CPU here):
    a workload measured from then would time the worker's start-up too, not only its sends."""
    started = time.monotonic()
    last, still_since = cpu_seconds(pids), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.05)
        now = cpu_seconds(pids)
        if now - last > 0.005:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return time.monotonic() - started


def peak_rss_mb(pids) -> dict[int, float]:
    """VmHWM (peak resident set) of each live process, in MB."""
    found = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    found[pid] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- ingest


def _signed_bodies(count: int, url: str) -> list[tuple[bytes, str]]:
    """Signed inbound SMS webhooks: member i % REPLIERS replying on the case it follows (bench/seed.py
    seed_repliers), so each is a post relayed to the case's other followers."""
    from twilio.request_validator import RequestValidator

    from bench.seed import reply_case, reply_phone

    validator = RequestValidator(AUTH_TOKEN)
    bodies = []
    for i in range(count):
        member = i % REPLIERS
        form = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": "", "NumMedia": "0", "ToCity": "",
                "FromZip": "", "SmsSid": "", "FromState": "", "SmsStatus": "received", "FromCity": "",
                "Body": f"{reply_case(member, REPLIERS)} bench reply {i}: agree, CT next", "FromCountry": "US",
                "To": OUR_NUMBER, "ToZip": "", "NumSegments": "1", "MessageSid": "", "AccountSid": ACCOUNT_SID,
                "From": reply_phone(member), "ApiVersion": "2010-04-01"}
        sid = "SM" + secrets.token_hex(16)
        form["SmsMessageSid"] = form["SmsSid"] = form["MessageSid"] = sid
        bodies.append((urlencode(form).encode(), validator.compute_signature(url, form)))
    return bodies


async def _load(base_url: str, bodies, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    index = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "relay.example.org"}

    async def one_connection(session):
        nonlocal index, errors
        while time.perf_counter() < deadline and index < len(bodies):
            body, signature = bodies[index]
            index += 1
            started = time.perf_counter()
            async with session.post(f"{base_url}/webhooks/twilio/sms", data=body,
                                    headers={**headers, "X-Twilio-Signature": signature}) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one_connection(session) for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1)}


def _bare_web(bench: Bench, port: int, env: dict) -> object:
    """The bare handler under the same server and settings as `relay web` (workers, threads, access log, the
    workers' warm-up and gc.freeze), for the baseline."""
    if WEB_SERVER == "granian":
        command = ["granian", "--host", "127.0.0.1", "--port", str(port), *granian_options(WEB_WORKERS, WEB_THREADS),
                   "--factory", "bench.bare_app:granian_app"]
    else:
        command = ["gunicorn", "--bind", f"127.0.0.1:{port}", *gunicorn_options(WEB_WORKERS, WEB_THREADS),
                   "bench.bare_app:app"]
    command[0] = os.path.join(os.path.dirname(sys.executable), command[0])
    return bench.processes.start("bare-web", command, env)


def ingest(bench: Bench) -> dict:
    from bench.seed import seed_repliers
    from relay.model.tables import Delivery, InboundEvent, Post
    from relay.services import build_services

    with bench.phase("ingest: database"):
        database_url = bench.database("ingest")
    with bench.phase("ingest: seed"):
        seeded = seed_repliers(build_services(bench.settings(database_url)).sessions, REPLIERS)
    log(f"ingest: {seeded['members']} SMS members following {seeded['cases']} cases, {REPLIERS} of them replying")
    per_second_guess = 1500
    with bench.phase("ingest: sign webhooks"):
        bodies = _signed_bodies(int(per_second_guess * INGEST_SECONDS * 1.5), PUBLIC_BASE + "/webhooks/twilio/sms")

    port = free_port()
    with bench.phase("ingest: start bare web"):
        bare = _bare_web(bench, port, relay_env())
        wait_for_health_bare(f"http://127.0.0.1:{port}")
    log(f"ingest baseline: bare Flask on {WEB_SERVER} ({WEB_WORKERS} x {WEB_THREADS}), {CONNECTIONS} connections, "
        f"{INGEST_SECONDS}s")
    with bench.phase("ingest: bare load"):
        baseline = _measured_load(bench, bare, f"http://127.0.0.1:{port}", bodies)
    with bench.phase("ingest: stop bare web"):
        bare.stop()

    port = free_port()
    with bench.phase("ingest: start relay web"):
        web = bench.processes.start("web", relay_command("web", "--port", str(port), "--server", WEB_SERVER,
                                                         "--workers", str(WEB_WORKERS), "--threads", str(WEB_THREADS)),
                                    bench.env(database_url, PORT=str(port)))
        wait_for_health(f"http://127.0.0.1:{port}", web)
    log(f"ingest: relay web --server {WEB_SERVER} ({WEB_WORKERS} x {WEB_THREADS}), {CONNECTIONS} connections, "
        f"{INGEST_SECONDS}s")
    with bench.phase("ingest: relay load"):
        measured = _measured_load(bench, web, f"http://127.0.0.1:{port}", bodies)
    with bench.phase("ingest: stop relay web"):
        web.stop()

    # every accepted webhook persisted, and processed by a worker
    services = build_services(bench.settings(database_url))
    accepted = measured["requests"] - measured["errors"]
    with bench.phase("ingest: start worker"):
        worker = bench.worker("ingest-worker", database_url, "inbound,outbound", settle=False)  # a backlog waits
    started = time.monotonic()

    def processed():
        with services.sessions() as session:
            return session.scalar(select(func.count()).select_from(InboundEvent)
                                  .where(InboundEvent.processed_at.is_not(None)))

    # Wait for all of it while it moves (no progress for 30 s, or PROCESSING_WAIT in all, ends the wait),
    # and report how far it got and its rate against the ingest rate.
    last, last_change = 0, time.monotonic()
    with bench.phase("ingest: processing"):
        while time.monotonic() - started < PROCESSING_WAIT and time.monotonic() - last_change < 30:
            count = processed()
            if count >= accepted:
                break
            if count > last:
                last, last_change = count, time.monotonic()
            time.sleep(0.5)
    processing_seconds = time.monotonic() - started
    with services.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(InboundEvent))
        outcomes = dict(session.execute(select(InboundEvent.outcome, func.count())
                                        .group_by(InboundEvent.outcome)).all())
        posts = session.scalar(select(func.count()).select_from(Post))
        relays = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.purpose == "relay"))
    done = processed()
    with bench.phase("ingest: stop worker"):
        worker.stop()
    services.dispose()
    with bench.phase("ingest: drop database"):
        bench.drop(database_url)
    processed_per_s = done / max(0.1, processing_seconds)
    return {"server": f"{WEB_SERVER} {WEB_WORKERS} x {WEB_THREADS}", "relay": measured, "baseline": baseline,
            "stored": stored, "processed": done,
            "outcomes": outcomes, "posts": posts, "relay_deliveries": relays,
            "processing_seconds": round(processing_seconds, 1),
            "processed_per_s": round(processed_per_s, 1),
            "processing_ratio": round(processed_per_s / measured["rps"], 3),
            "ratio": round(measured["rps"] / baseline["rps"], 3),
            "p99_ratio": round(measured["p99_ms"] / baseline["p99_ms"], 2)}


def _measured_load(bench: Bench, server, base_url: str, bodies) -> dict:
    """The load against one server, with the CPU its processes (the server's main process and workers) spent per
    request, read from /proc (robust to a busy machine, unlike the rates), and the load average after it."""
    from bench import webhook_load

    pids = group_pids(server.pgid)
    if INGEST_CLIENT == "aiohttp":  # the client before issue 18 item 5, to compare
        before = cpu_seconds(pids)
        cpu_started = time.process_time()
        result = asyncio.run(_load(base_url, bodies, INGEST_SECONDS))
        result["client_cpu_ms_per_request"] = round((time.process_time() - cpu_started) * 1000 / max(
            1, result["requests"]), 3)
    else:
        requests_ = webhook_load.requests_for(base_url, bodies)
        before = cpu_seconds(pids)
        result = webhook_load.load(base_url, requests_, INGEST_SECONDS, CONNECTIONS)
    result["client"] = INGEST_CLIENT
    result["cpu_ms_per_request"] = round((cpu_seconds(pids) - before) * 1000 / max(1, result["requests"]), 3)
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return result


def wait_for_health_bare(base_url: str) -> None:
    def up():
        try:
            return requests.post(f"{base_url}/webhooks/twilio/sms", data={"MessageSid": "x", "From": "y"},
                                 timeout=1).status_code == 200
        except requests.RequestException:
            return False

    Bench._wait(up, 30, "the bare app")


# ---------------------------------------------------------------- fan-out


def _sample_email(settings) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.email_from, "raw@bench.example", "[C1] Fever"
    message.set_content("A new case was posted.\n" * 40)
    message.add_alternative("<p>A new case was posted.</p>\n" * 40, subtype="html")
    return message.as_bytes()


def fanout(bench: Bench, members: int, email_only: bool = False) -> dict:
    """One notice to `members` members (40 % SMS, 40 % email, 20 % both; or email only), from "send" to the
    last message at the stand-ins. Against raw pushes of the same messages (a sample of RAW_SAMPLE at
    most) in the same run: the machine's limit (bench/raw_limit.py: aiohttp and aiosmtplib in one event
    loop; the median of RAW_LIMIT_PUSHES pushes), and relay's own provider clients on threads
    (bench/raw_send.py), for information. CPU time of the worker's processes and of the raw client per
    message."""
    from bench import raw_limit, raw_send
    from bench.seed import channels_of, seed_network
    from bench.seed import email_only as only_email
    from relay.infra.dispatch import warm_quietly
    from relay.model.tables import Delivery
    from relay.notices.lifecycle import new_case_notice
    from relay.services import build_services

    name = f"email{members}" if email_only else f"fanout{members}"
    with bench.phase(f"{name}: database"):
        database_url = bench.database(name)
    settings = bench.settings(database_url)
    services = build_services(settings)
    # This process sends the notice as a web worker would, and a web worker loads Celery's publishing side as it
    # starts (webhooks/app.py warm_up): so does this one, before the clock starts (~100 ms of a cold first batch).
    warm_quietly(services.dispatcher)
    with bench.phase(f"{name}: seed"):
        expected = seed_network(services.sessions, members, channels=only_email if email_only else channels_of)
    total = expected["sms"] + expected["email"]
    with bench.phase(f"{name}: start worker"):
        worker = bench.worker(f"worker-{name}", database_url, "bulk,outbound")
    bench.reset()
    log(f"fan-out: one notice to {members} members = {total} messages ({'email only' if email_only else 'mixed'})")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_cpu_before = cpu_seconds(group_pids(worker.pgid))
    started = time.time()
    result = new_case_notice(services, "C1", ["everyone"])
    enqueued = time.time() - started
    assert result.sms + result.emails == total, (result, expected)
    peaks: dict[int, float] = {}

    def all_arrived():
        peaks.update({pid: max(mb, peaks.get(pid, 0)) for pid, mb in peak_rss_mb(group_pids(worker.pgid)).items()})
        twilio, smtp = bench.stats()
        return (twilio["count"] + smtp["count"] >= total) and (twilio, smtp)

    with bench.phase(f"{name}: send (relay)"):
        twilio, smtp = bench._wait(all_arrived, 900, f"{total} messages at the stand-ins", interval=0.25)
    worker_cpu = cpu_seconds(group_pids(worker.pgid)) - worker_cpu_before
    last = max(t for t in (twilio["last"], smtp["last"]) if t)
    first = min(t for t in (twilio["first"], smtp["first"]) if t)
    seconds = last - started
    with bench.phase(f"{name}: settle and count"):
        time.sleep(1.0)
        twilio_after, smtp_after = bench.stats()
        with services.sessions() as session:
            statuses = dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    standin_peaks = peak_rss_mb([bench.twilio.pid, bench.smtp.pid])
    with bench.phase(f"{name}: stop worker"):
        worker.stop()
    services.dispose()
    with bench.phase(f"{name}: drop database"):
        bench.drop(database_url)
    bench_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # The raw rate per message does not depend on N: above RAW_SAMPLE messages a sample of that size keeps
    # the run under 10 minutes.
    share = min(1.0, RAW_SAMPLE / total)
    raw_sms, raw_emails = round(expected["sms"] * share), round(expected["email"] * share)
    raw_email = _sample_email(settings)

    def pushed() -> float:
        raw_twilio, raw_smtp = bench.stats()
        return (max(t for t in (raw_twilio["last"], raw_smtp["last"]) if t)
                - min(t for t in (raw_twilio["first"], raw_smtp["first"]) if t))

    log(f"fan-out limit: {raw_sms} SMS + {raw_emails} emails, aiohttp + aiosmtplib in one event loop, "
        f"{RAW_LIMIT_PUSHES} pushes")
    pushes = []  # (seconds, client CPU seconds) of each push
    for _ in range(RAW_LIMIT_PUSHES):
        bench.reset()
        with bench.phase(f"{name}: raw limit"):
            cpu = raw_limit.push(settings, raw_sms, raw_emails, raw_email)
        pushes.append((pushed(), cpu))
    limit_seconds, limit_cpu = sorted(pushes)[len(pushes) // 2]  # the median push
    own = min(1.0, OWN_CLIENTS_SAMPLE / total)
    own_sms, own_emails = round(expected["sms"] * own), round(expected["email"] * own)
    log(f"fan-out, relay's own clients: {own_sms} SMS + {own_emails} emails on "
        f"{WORKER_PROCESSES} processes x {SEND_THREADS} threads")
    bench.reset()
    with bench.phase(f"{name}: raw own clients"):
        raw_send.push(settings, own_sms, own_emails, WORKER_PROCESSES, SEND_THREADS, raw_email)
    raw_seconds = pushed()
    rate, raw_rate = total / seconds, (own_sms + own_emails) / raw_seconds
    limit_rate = (raw_sms + raw_emails) / limit_seconds
    return {
        "members": members, "email_only": email_only, "send_async": SEND_ASYNC,
        "messages": total, "sms": expected["sms"], "emails": expected["email"],
        "seconds": round(seconds, 2), "msgs_per_s": round(rate, 1), "enqueue_seconds": round(enqueued, 2),
        "first_message_seconds": round(first - started, 3),
        "at_standins": twilio_after["count"] + smtp_after["count"], "statuses": statuses,
        "limit_messages": raw_sms + raw_emails, "limit_seconds": round(limit_seconds, 2),
        "limit_msgs_per_s": round(limit_rate, 1), "ratio": round(rate / limit_rate, 3),
        "limit_pushes_msgs_per_s": [round((raw_sms + raw_emails) / s, 1) for s, _ in pushes],
        "limit_in_flight": {"sms": raw_limit.SMS_IN_FLIGHT, "smtp_connections": raw_limit.SMTP_CONNECTIONS},
        "cpu_ms_per_msg": {"relay_workers": round(worker_cpu * 1000 / total, 3),
                           "raw_limit_client": round(limit_cpu * 1000 / (raw_sms + raw_emails), 3)},
        "raw_messages": own_sms + own_emails, "raw_seconds": round(raw_seconds, 2),
        "raw_msgs_per_s": round(raw_rate, 1), "own_ratio": round(rate / raw_rate, 3),
        "peak_rss_mb": {"worker_processes": round(max(peaks.values(), default=0), 1),
                        "sender_of_the_notice": round(bench_peak, 1),
                        "standins": round(max(standin_peaks.values(), default=0), 1)},
        "sender_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1),
    }


# ---------------------------------------------------------------- digest


def digest(bench: Bench) -> dict:
    """Daily digests for DIGEST_SUBSCRIBERS subscribers, all due now, from the beat task's publication
    to the last email at the SMTP sink, against rendering and sending the same emails in a plain loop
    (bench/raw_digests.py). Afterwards: exactly one digest per subscriber for the period, and exactly
    one email each at the sink."""
    from bench import raw_digests
    from bench.seed import seed_digest_subscribers
    from relay.digests.building import build_content
    from relay.infra.dispatch import QUEUE_MAINTENANCE, TASK_SEND_DIGESTS
    from relay.model.tables import CaseMute, Delivery, Digest, DigestSubscription, Member, utcnow
    from relay.services import build_services
    from workers.app import DIGESTS_EVERY_SECONDS

    n = DIGEST_SUBSCRIBERS
    with bench.phase("digest: database"):
        database_url = bench.database("digest")
    settings = bench.settings(database_url)
    services = build_services(settings)
    seeded_at = utcnow()
    with bench.phase("digest: seed"):
        seeded = seed_digest_subscribers(services.sessions, n, seeded_at)
    log(f"digest: {n} subscribers seeded in {(utcnow() - seeded_at).total_seconds():.1f} s, "
        f"{len(seeded['zones'])} zones")
    with bench.phase("digest: start worker"):
        worker = bench.worker("digest-worker", database_url, "maintenance,bulk,outbound")
    bench.reset()
    log(f"digest: relay.send_digests published for {n} subscribers")
    started = time.time()
    services.dispatcher.app.send_task(TASK_SEND_DIGESTS, queue=QUEUE_MAINTENANCE, expires=DIGESTS_EVERY_SECONDS)
    peaks: dict[int, float] = {}
    progress = {"count": -1, "at": time.monotonic()}

    def arrived_or_stalled():
        peaks.update({pid: max(mb, peaks.get(pid, 0)) for pid, mb in peak_rss_mb(group_pids(worker.pgid)).items()})
        _, smtp = bench.stats()
        if smtp["count"] != progress["count"]:
            progress.update(count=smtp["count"], at=time.monotonic())
        stalled = time.monotonic() - progress["at"] > (60 if smtp["count"] else 300)
        return (smtp["count"] >= n or stalled) and smtp

    with bench.phase("digest: send (relay)"):
        smtp = bench._wait(arrived_or_stalled, 3600, f"{n} digests at the SMTP sink", interval=0.25)
    seconds = (smtp["last"] or time.time()) - started
    with bench.phase("digest: settle and check"):
        time.sleep(2.0)  # anything more than one email each would arrive now
        _, smtp_after = bench.stats()
        with services.sessions() as session:
            mine = Digest.created_at >= seeded_at  # this run's digests (yesterday's were seeded)
            per_subscriber = session.execute(select(Digest.subscription_id, func.count()).where(mine)
                                             .group_by(Digest.subscription_id)).all()
            empty = session.scalar(select(func.count()).select_from(Digest).where(mine, Digest.items == 0))
            statuses = dict(session.execute(select(Delivery.status, func.count()).where(Delivery.purpose == "digest")
                                            .group_by(Delivery.status)).all())
            # the baseline's inputs: the same content (one per kind of subscriber) and each one's period
            periods = dict(session.execute(select(Digest.subscription_id, Digest.period).where(mine)).all())
            muting = set(session.scalars(select(CaseMute.member_id)))
            subs = session.execute(select(DigestSubscription, Member).outerjoin(
                Member, Member.id == DigestSubscription.member_id).order_by(DigestSubscription.id)).all()
            kinds: dict[int, DigestSubscription] = {}
            for sub, member in subs:
                kinds.setdefault(0 if member is None else 2 if member.id in muting else 1, sub)
            window_end = session.scalar(select(func.max(Digest.window_end)).where(mine)) or utcnow()
            contents = [build_content(session, settings, kinds[k], seeded["window_start"], window_end)
                        if k in kinds else None for k in range(3)]
            fallback = window_end.date().isoformat()
            subscribers = [(sub.id, sub.member_id, sub.address, member.name if member else "",
                            member.language if member else "en",
                            0 if member is None else 2 if member.id in muting else 1, periods.get(sub.id, fallback))
                           for sub, member in subs]
    worker_peak = round(max(peaks.values(), default=0), 1)
    with bench.phase("digest: stop worker"):
        worker.stop()
    services.dispose()
    once = sum(1 for _, count in per_subscriber if count == 1)
    more = sum(1 for _, count in per_subscriber if count > 1)
    exactly_once = once == n and more == 0 and smtp_after["count"] == n and not empty

    from types import SimpleNamespace

    from relay.digests.building import render

    sample = subscribers[:2000]
    render_started = time.perf_counter()
    with bench.phase("digest: templates alone"):
        for sub_id, member_id, _, _, language, kind, period in sample:  # the templates alone, for comparison
            render(settings, SimpleNamespace(frequency="daily"), contents[kind], period, language,
                   f"{PUBLIC_BASE}/unsubscribe/{sub_id}",
                   f"{PUBLIC_BASE}/preferences/{member_id}" if member_id else None)
    render_only = len(sample) / (time.perf_counter() - render_started)

    # The raw rate per digest does not depend on N: a sample keeps the whole bench near 10 minutes.
    raw_sample = subscribers[:RAW_DIGEST_SAMPLE]
    log(f"digest baseline: {len(raw_sample)} digests rendered in a plain loop and pushed raw")
    bench.reset()
    with bench.phase("digest: raw baseline"):
        raw_started = raw_digests.push(settings, contents, raw_sample, window_end, WORKER_PROCESSES, SEND_THREADS)
    _, raw_smtp = bench.stats()
    raw_seconds = raw_smtp["last"] - raw_started
    rate, raw_rate = smtp_after["count"] / seconds, raw_smtp["count"] / raw_seconds
    return {
        "subscribers": n, "members": seeded["members"], "zones": len(seeded["zones"]),
        "seconds": round(seconds, 2), "digests_per_s": round(rate, 1),
        "first_email_seconds": round(smtp["first"] - started, 2) if smtp["first"] else None,
        "at_sink": smtp_after["count"], "digests_recorded": sum(c for _, c in per_subscriber),
        "subscribers_with_one": once, "subscribers_with_more": more, "empty_digests": empty,
        "delivery_statuses": statuses, "exactly_once": exactly_once,
        "raw_digests": raw_smtp["count"], "raw_seconds": round(raw_seconds, 2),
        "raw_digests_per_s": round(raw_rate, 1), "ratio": round(rate / raw_rate, 3),
        "render_only_per_s": round(render_only, 1),
        "peak_rss_mb": {"worker_processes": worker_peak},
    }


# ---------------------------------------------------------------- report


def _ingest_cpu_note(i: dict) -> str:
    """CPU per request of each server's processes and of the load client (robust to a busy machine)."""
    relay, bare = i["relay"], i["baseline"]
    if "cpu_ms_per_request" not in relay:
        return ""
    server = f"; server {i['server']} (workers x threads)" if i.get("server") else ""
    return (f"{server}; CPU/req: relay web {relay['cpu_ms_per_request']:.2f} ms, bare {bare['cpu_ms_per_request']:.2f} ms, "
            f"load client {relay.get('client_cpu_ms_per_request', 0):.2f} ms; load average {relay['loadavg'][0]}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} x {cpu}, {memory // 1024} GB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _pushes_note(f: dict) -> str:
    """The median push's rate is the limit; the others beside it (older results have one push)."""
    rates = f.get("limit_pushes_msgs_per_s") or []
    return f" (median of {', '.join(f'{r:.0f}' for r in rates)})" if len(rates) > 1 else ""


def table(results: dict) -> str:
    rows = [("workload", "relay", "raw baseline", "ratio", "target", "notes")]
    i = results.get("ingest")
    if i:
        rows.append(("ingest (signed SMS webhooks, 32 conns)", f"{i['relay']['rps']:.0f} req/s, p99 "
                     f"{i['relay']['p99_ms']} ms", f"{i['baseline']['rps']:.0f} req/s, p99 {i['baseline']['p99_ms']} ms",
                     f"{i['ratio']:.2f}", ">= 0.5, p99 < 50 ms",
                     f"errors {i['relay']['errors']}; stored {i['stored']}, processed {i['processed']}"
                     + _ingest_cpu_note(i)))
        rows.append(("inbound processing (member replies, relayed)", f"{i['processed_per_s']:.0f} events/s",
                     f"ingest {i['relay']['rps']:.0f} req/s", f"{i['processing_ratio']:.2f}", ">= 0.8",
                     f"{i['posts']:,} posts, {i['relay_deliveries']:,} relays to followers; outcomes "
                     + ", ".join(f"{k} {v:,}" for k, v in sorted(i["outcomes"].items(), key=lambda kv: str(kv[0])))))
    fan = [v for k, v in results.items() if k.startswith("fanout_")]

    def fanout_row(f: dict, label: str, target: str, extra: str = "") -> tuple:
        cpu = f["cpu_ms_per_msg"]
        return (label, f"{f['seconds']} s = {f['msgs_per_s']:.0f} msg/s",
                f"{f['limit_messages']:,} in {f['limit_seconds']} s = {f['limit_msgs_per_s']:.0f} msg/s"
                + _pushes_note(f), f"{f['ratio']:.2f}", target,
                f"{extra}relay's own clients {f['raw_msgs_per_s']:.0f} msg/s (relay at {f['own_ratio']:.2f} of it); "
                f"CPU/msg: relay workers {cpu['relay_workers']:.2f} ms, raw client {cpu['raw_limit_client']:.2f} ms; "
                f"peak RSS worker {f['peak_rss_mb']['worker_processes']} MB; enqueued in "
                f"{f['enqueue_seconds']} s; first msg {f['first_message_seconds']} s")

    for f in fan:
        rows.append(fanout_row(f, f"fan-out N={f['members']:,} ({f['messages']:,} msgs)", ">= 0.7"))
    e = results.get(f"email_{EMAIL_ONLY_MEMBERS}")
    if e:
        fast, slow = (round(t / e["seconds"]) for t in MAILMAN_SECONDS)
        rows.append(fanout_row(e, f"email only N={e['members']:,} (personalised)", "< 5 s, >= 20x Mailman",
                               f"{fast}-{slow}x GNU Mailman 3.3.10's personalised (VERP) delivery to 7,400 "
                               f"({MAILMAN_SECONDS[0]}-{MAILMAN_SECONDS[1]} s, a peer's measurement on this kind of "
                               f"machine, aiosmtpd sink; this run's sink: {SMTP_SINK}); "))
    if len(fan) == 2:
        growth = fan[1]["seconds"] / fan[0]["seconds"]
        size = fan[1]["members"] / fan[0]["members"]
        rows.append((f"fan-out cost growth ({size:.0f}x members)", f"{growth:.1f}x time", "", "",
                     f"<= {1.2 * size:.0f}x", ""))
        rows.append(("notice latency (send -> first message)", f"{fan[1]['first_message_seconds']} s",
                     "", "", "< 1 s", f"{fan[1]['messages']:,} messages queued"))
    d = results.get("digest")
    if d:
        check = (f"exactly once: {d['digests_recorded']:,} digests, one each for {d['subscribers_with_one']:,} of "
                 f"{d['subscribers']:,} subscribers, {d['at_sink']:,} emails at the sink")
        if not d["exactly_once"]:
            check = (f"MISMATCH: {d['digests_recorded']:,} digests, one each for {d['subscribers_with_one']:,} and "
                     f"more for {d['subscribers_with_more']:,} of {d['subscribers']:,} subscribers, "
                     f"{d['empty_digests']:,} empty; {d['at_sink']:,} emails at the sink")
        rows.append((f"digest ({d['subscribers']:,} subscribers)",
                     f"{d['seconds']} s = {d['digests_per_s']:.0f} digests/s",
                     f"{d['raw_seconds']} s = {d['raw_digests_per_s']:.0f} digests/s", f"{d['ratio']:.2f}", ">= 0.3",
                     f"peak RSS worker {d['peak_rss_mb']['worker_processes']} MB; first email "
                     f"{d['first_email_seconds']} s; {check}"))
    if results.get("reach"):
        from bench.reach import row as reach_row

        rows.append(reach_row(results["reach"]))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(r[c]).ljust(widths[c]) for c in range(len(r))) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    unknown = sorted(set(ONLY) - set(WORKLOADS))
    if unknown:
        print(f"BENCH_ONLY: unknown workload(s) {', '.join(unknown)} (choose from {', '.join(WORKLOADS)})",
              file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    bench = Bench()
    results: dict = {"machine": machine(), "quick": QUICK, "only": ONLY, "smtp_sink": SMTP_SINK,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    t0 = time.monotonic()
    try:
        if set(ONLY) - {"reach"}:  # the Reach page needs no stand-ins
            with bench.phase("setup: stand-ins"):
                bench.start_standins()
        if "ingest" in ONLY:
            results["ingest"] = ingest(bench)
            log(f"ingest: {json.dumps(results['ingest'])}")
            (OUT / "partial.json").write_text(json.dumps(results, indent=2, default=str))
        for n in SIZES if "fanout" in ONLY else ():
            results[f"fanout_{n}"] = fanout(bench, n)
            log(f"fan-out {n}: {json.dumps(results[f'fanout_{n}'])}")
            (OUT / "partial.json").write_text(json.dumps(results, indent=2, default=str))
        if "email" in ONLY:
            key = f"email_{EMAIL_ONLY_MEMBERS}"
            results[key] = fanout(bench, EMAIL_ONLY_MEMBERS, email_only=True)
            log(f"email-only fan-out {EMAIL_ONLY_MEMBERS}: {json.dumps(results[key])}")
            (OUT / "partial.json").write_text(json.dumps(results, indent=2, default=str))
        if "digest" in ONLY:
            results["digest"] = digest(bench)
            log(f"digest: {json.dumps(results['digest'], default=str)}")
            (OUT / "partial.json").write_text(json.dumps(results, indent=2, default=str))
        if "reach" in ONLY:
            from bench.reach import reach

            results["reach"] = reach(bench)
            log(f"reach: {json.dumps(results['reach'], default=str)}")
            (OUT / "partial.json").write_text(json.dumps(results, indent=2, default=str))
    finally:
        with bench.phase("teardown: stop processes, drop databases"):
            bench.close()
    results["total_seconds"] = round(time.monotonic() - t0, 1)
    results["phases"] = bench.phase.done
    results["seconds_per_workload"] = bench.phase.per_workload()
    report = table(results)
    phases = bench.phase.summary()
    (OUT / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    (OUT / "latest.md").write_text(f"Machine: {results['machine']}\n\n{report}\n\nWhere the time went (s):\n{phases}\n")
    print(f"\nMachine: {results['machine']}\n\n{report}\n\nWhere the time went (s):\n{phases}\n\n"
          f"(var/bench/latest.json; {results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
