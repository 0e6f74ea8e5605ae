"""A new user's first run on the embedded defaults: no database or broker configured, so `relay up`
uses SQLite and the filesystem broker under RELAY_VAR_DIR, and SMS go to the dev outbox.

`relay up` -> `relay demo` -> sign in as the printed admin -> the printed curl (a member's signed SMS
reply) -> the relayed texts in /dev/outbox (on because `relay up` turns it on in the embedded mode,
and shown only to a signed-in admin) and the post on the case page -> SIGTERM stops everything."""
from __future__ import annotations

import email
import email.policy
import html
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from relay.cli.demo import DEMO_TITLE
from relay.providers.twilio_sms import EMPTY_TWIML

from .processes import Processes, free_port, group_pids, relay_command, relay_env, wait_for_health, wait_until

pytestmark = pytest.mark.e2e

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
REPLY = "Looks like organising pneumonia. Suggest follow-up CT in 2 weeks."
RELAYED = f"C1 Lee Minho: {REPLY}"
CONFIRMATION_KO = "C1에 게시되어 4명에게 전달되었습니다."  # Lee's language is ko in the demo network
ROW = re.compile(r"<tr><td>(\d+)</td><td>(\w+)</td><td>([^<]*)</td><td><pre>(.*?)</pre></td>", re.S)

# `relay up` migrates, then starts gunicorn's three workers, the Celery worker with its beat and two pool processes,
# each loading relay (~3 s of CPU each on this 2-core machine kind; `create_app` alone 3.2 s). Beside the suite's
# other workers, on a slower host of the kind, that took more than the 40 s this waited (the web answered no
# /healthz before its workers had loaded the app): healthy sooner is returned sooner.
UP_STARTS_WITHIN = 120
# What the web child's command line names, on either server: webhooks.serving:granian_app (granian, the default)
# or webhooks.app:create_app() (gunicorn)
WEB_CHILD = "webhooks."


def outbox_with(browser: requests.Session, base_url: str, count: int):
    """A poll for /dev/outbox holding at least `count` messages."""
    def poll():
        messages = outbox(browser, base_url)
        return messages if len(messages) >= count else None

    return poll


def demo_sign_in(base_url: str, demo_output: str) -> tuple[requests.Session, requests.Response]:
    """Sign in as the admin `relay demo` printed (the outbox is for a signed-in admin only)."""
    sign_in = re.search(r"/signin as (\S+) .*with the password (\S+)", demo_output)
    assert sign_in, demo_output
    browser = requests.Session()
    form = browser.get(f"{base_url}/signin", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    signed_in = browser.post(f"{base_url}/signin", data={"email": sign_in.group(1), "password": sign_in.group(2),
                                                         "csrf_token": token}, timeout=10, allow_redirects=False)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/console/", signed_in.text
    return browser, signed_in


def outbox(browser: requests.Session, base_url: str, channel: str = "sms") -> list[tuple[str, str]]:
    """(to, body) of every message of one channel on the /dev/outbox page (as a signed-in admin)."""
    response = browser.get(f"{base_url}/dev/outbox", timeout=5, allow_redirects=False)
    assert response.status_code == 200, response.text
    return [(html.unescape(to), html.unescape(body)) for _id, chan, to, body in ROW.findall(response.text)
            if chan == channel]


def test_relay_up_demo_and_curl_on_embedded_defaults(processes: Processes, tmp_path):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    var_dir = tmp_path / "var"
    env = relay_env(VAR_DIR=str(var_dir), PORT=str(port))  # no RELAY_DATABASE_URL / RELAY_BROKER_URL
    up = processes.start("up", relay_command("up", "--port", str(port)), env)
    health = wait_for_health(base_url, up, timeout=UP_STARTS_WITHIN)
    assert health["checks"] == {"database": "ok", "broker": "ok"}
    assert (var_dir / "relay.sqlite3").exists() and (var_dir / "broker" / "queue").is_dir()
    assert "SMS and email go to the dev outbox" in up.log()

    demo = subprocess.run(relay_command("demo"), env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "members: 5 new, 0 updated; list tft-demo; case C1" in demo.stdout
    assert "notice sent to 5 members" in demo.stdout
    assert "alembic" not in demo.stdout + demo.stderr  # issue 15, item 10: no migration INFO lines
    curls = [line for line in demo.stdout.splitlines() if line.startswith("curl ")]
    assert len(curls) == 2, demo.stdout  # Lee's SMS reply, Alice's WhatsApp reply (issue 19)
    assert f"{base_url}/webhooks/twilio/sms" in curls[0] and "whatsapp%3A" not in curls[0]
    assert "From=whatsapp:+33612345604" in curls[1] and "WhatsApp is off" in demo.stdout

    # The outbox shows members' numbers and clinical text: not to an anonymous visitor.
    anonymous = requests.get(f"{base_url}/dev/outbox", timeout=5, allow_redirects=False)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/signin"), anonymous.text
    # The demo printed a sign-in for its coordinator (and admin): it opens the console and the outbox
    # (a plain-http base, so the session cookie is not Secure and works here).
    browser, signed_in = demo_sign_in(base_url, demo.stdout)
    assert "Secure" not in signed_in.headers["Set-Cookie"] and "HttpOnly" in signed_in.headers["Set-Cookie"]

    # The five notices arrive in the outbox (delivered by the worker `relay up` started).
    notices = wait_until(outbox_with(browser, base_url, 5), 30, "the five notices in /dev/outbox", watch=[up])
    assert sorted(to for to, _ in notices) == sorted([KIM, LEE, PARK, ALICE, BEN])
    assert all("C1" in body and DEMO_TITLE in body for _, body in notices)

    played = subprocess.run(["bash", "-c", curls[0]], capture_output=True, text=True, timeout=30)
    assert played.returncode == 0, played.stderr
    assert played.stdout.strip() == EMPTY_TWIML  # 200 with empty TwiML (a 403 would print its reason)

    messages = wait_until(outbox_with(browser, base_url, 5 + 4 + 1), 30,
                          "the relayed texts and the confirmation in /dev/outbox", watch=[up])
    after = sorted(m for m in messages if DEMO_TITLE not in m[1])  # all but the five notices
    assert len(messages) == 10
    assert after == sorted([(KIM, RELAYED), (PARK, RELAYED), (ALICE, RELAYED), (BEN, RELAYED),
                            (LEE, CONFIRMATION_KO)])
    assert len(list((var_dir / "outbox").glob("sms-*.json"))) == 10

    # Email followers read the same thread: 5 notices and 4 relays, the relays threaded under the notice.
    emails = wait_until(lambda: (lambda found: found if len(found) >= 9 else None)(
        [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
         for p in sorted((var_dir / "outbox").glob("email-*.eml"))]), 30, "nine emails in the outbox", watch=[up])
    notice_ids = {m["Message-ID"] for m in emails if m["In-Reply-To"] is None}
    replies = [m for m in emails if m["In-Reply-To"] is not None]
    assert len(notice_ids) == 1 and len(replies) == 4
    assert {m["In-Reply-To"] for m in replies} == notice_ids
    assert all(m["Subject"] == f"Re: [C1] {DEMO_TITLE}" and REPLY in m.get_body(("plain",)).get_content()
               for m in replies)

    page = requests.get(f"{base_url}/library/cases/C1", timeout=5)
    assert page.status_code == 200
    assert DEMO_TITLE in page.text
    assert "Lee Minho · SMS" in page.text and html.escape(REPLY) in page.text

    # Alice's WhatsApp reply (issue 19): the same webhook, threaded into C1 and relayed by SMS; WhatsApp is off
    # in this relay, so her confirmation comes by SMS instead.
    played = subprocess.run(["bash", "-c", curls[1]], capture_output=True, text=True, timeout=30)
    assert played.returncode == 0 and played.stdout.strip() == EMPTY_TWIML, played.stdout + played.stderr
    messages = wait_until(outbox_with(browser, base_url, 10 + 4 + 1), 30, "Alice's WhatsApp reply relayed by SMS",
                          watch=[up])
    alice_says = "C1 Alice Moreau: Agree, and worth testing for influenza too."
    assert sorted(to for to, body in messages if body == alice_says) == sorted([KIM, LEE, PARK, BEN])
    page = requests.get(f"{base_url}/library/cases/C1", timeout=5)
    assert "Alice Moreau · WhatsApp" in page.text

    console = browser.get(f"{base_url}/console/", timeout=5)
    # issue 21: the demo coordinator, Kim Jiwon, reads the console in her own language, Korean
    assert console.status_code == 200 and "발송이 진행 중입니다" in console.text

    # Ctrl-C (here SIGTERM) stops relay up, and with it the web server and the worker.
    children = [pid for pid in group_pids(up.pgid) if pid != up.pid]
    assert len(children) >= 4, children  # gunicorn master + workers, celery worker + pool
    stopped_at = time.monotonic()
    up.signal(signal.SIGTERM)
    try:
        returncode = up.popen.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"relay up still running 20 s after SIGTERM:\n{up.log_tail()}")
    assert returncode == 0, up.log_tail()
    assert time.monotonic() - stopped_at < 20
    # Its children must be gone too (a moment's grace for the last exits to be reaped).
    wait_until(lambda: not group_pids(up.pgid), 3, f"relay up's children {children} to be gone")


def _child_running(parent: int, word: str) -> int | None:
    """The pid of `parent`'s child whose command line has `word` (e.g. relay up's worker)."""
    from pathlib import Path

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent and fields[0] != "Z" and word in cmdline:
            return int(entry.name)
    return None


def test_relay_up_restarts_a_killed_worker_and_the_web_keeps_answering(processes: Processes, tmp_path):
    """issue 13, item 9: the kernel's OOM killer takes the worker; relay up starts it again (with a
    log line) and the web answered throughout; the new worker delivers a notice."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = relay_env(VAR_DIR=str(tmp_path / "var"), PORT=str(port))
    up = processes.start("up", relay_command("up", "--port", str(port)), env)
    wait_for_health(base_url, up, timeout=UP_STARTS_WITHIN)
    worker = wait_until(lambda: _child_running(up.pid, "worker --beat"), 10, "relay up's worker")
    web = _child_running(up.pid, WEB_CHILD)
    assert web

    os.kill(worker, signal.SIGKILL)
    answered = []

    def restarted():
        answered.append(requests.get(f"{base_url}/healthz", timeout=2).status_code)
        found = _child_running(up.pid, "worker --beat")
        return found if found not in (None, worker) else None

    new_worker = wait_until(restarted, 20, "relay up to start its worker again", interval=0.2, watch=[up])
    assert set(answered) == {200}  # the web answered while the worker was down
    assert f"worker (pid {worker}) was killed by SIGKILL" in up.log()
    assert f"worker restarted: pid {new_worker} replaces {worker}" in up.log()
    assert _child_running(up.pid, WEB_CHILD) == web  # the web server was never restarted

    demo = subprocess.run(relay_command("demo"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    browser, _ = demo_sign_in(base_url, demo.stdout)
    notices = wait_until(outbox_with(browser, base_url, 5), 30, "the five notices, sent by the new worker",
                         watch=[up])
    assert sorted(to for to, _ in notices) == sorted([KIM, LEE, PARK, ALICE, BEN])


def test_relay_worker_restarts_its_celery_worker_and_says_it_runs_no_sweeper(processes: Processes, tmp_path):
    """A bare `relay worker` (no --beat) keeps its Celery worker up and makes the missing sweeper explicit."""
    env = relay_env(VAR_DIR=str(tmp_path / "var"))
    worker = processes.start("worker", relay_command("worker", "--concurrency", "1"), env)
    celery = wait_until(lambda: _child_running(worker.pid, "--no-supervise"), 20, "relay worker's Celery worker",
                        watch=[worker])
    assert "This worker runs no sweeper: run `relay beat`" in worker.log()
    wait_until(lambda: "ready." in worker.log(), 60, "Celery to be ready", watch=[worker])
    os.kill(celery, signal.SIGKILL)
    again = wait_until(lambda: (lambda pid: pid if pid not in (None, celery) else None)(
        _child_running(worker.pid, "--no-supervise")), 20, "relay worker to start Celery again", watch=[worker])
    assert f"celery worker (pid {celery}) was killed by SIGKILL" in worker.log()
    assert f"celery worker restarted: pid {again} replaces {celery}" in worker.log()
    worker.signal(signal.SIGTERM)  # passed on to Celery: both exit
    assert worker.popen.wait(timeout=30) == 0, worker.log_tail()
    wait_until(lambda: not group_pids(worker.pgid), 10, "the Celery worker to be gone")
