"""Starting real relay processes for end-to-end tests, and always stopping them.

Every process is started in its own session (so its pid is also its process-group id) with
stdout and stderr going to a log file under the test's tmp_path. Stopping sends SIGTERM to the
whole group, waits, then SIGKILLs whatever is left of the group, so web server workers and Celery
pool children never outlive a test, even when it fails or is interrupted.

    def test_x(processes):
        web = processes.start("web", relay_command("web", "--port", str(port)), env)
        wait_for_health(f"http://127.0.0.1:{port}", web)
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Groups started by this test process that are still running: killed at interpreter exit, a last
# resort for a run interrupted so hard that fixture finalizers never ran.
_LIVE_GROUPS: set[int] = set()


def relay_command(*args: str) -> list[str]:
    """`relay ARGS` run with this interpreter (the project's virtualenv)."""
    return [sys.executable, "-m", "relay.cli", *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def relay_env(**settings: str) -> dict[str, str]:
    """The environment for a relay process: this one without any RELAY_* setting (so the
    developer's shell cannot leak into a test), plus `settings`, given without the RELAY_ prefix."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAY_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({f"RELAY_{name}": str(value) for name, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RELAY_LOG_LEVEL", "INFO")
    env.setdefault("RELAY_QUIET_HOURS", "off")  # issue 5: the wall clock must not hold back e2e relays
    env.setdefault("RELAY_SMS_RATE", "0")  # carrier pacing (1/s per long code) is tested in test_ratelimit
    if env.get("RELAY_PUBLIC_BASE_URL", "").startswith("https://"):
        env.setdefault("RELAY_SECRET_KEY", "e2e-" + "0" * 60)  # issue 13: an https base needs a key to start
    return env


# ---------------------------------------------------------------- process groups


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
    return raw[raw.rindex(")") + 2:].split()


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return sorted(found)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        _killpg(pgid, signal.SIGKILL)


atexit.register(_kill_live_groups)


class Proc:
    """One started process (the leader of its own process group) and its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.pgid = self.popen.pid
        _LIVE_GROUPS.add(self.pgid)

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} rc={self.popen.returncode}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """Signal the leader only (not its group): the process must pass it on itself."""
        if self.alive:
            self.popen.send_signal(sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the whole group, wait up to `grace` seconds for it to go, then SIGKILL what is
        left. Returns the leader's exit code."""
        try:
            if group_pids(self.pgid):
                _killpg(self.pgid, signal.SIGTERM)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and (self.alive or group_pids(self.pgid)):
                    time.sleep(0.05)
            _killpg(self.pgid, signal.SIGKILL)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was not delivered
                pass
            deadline = time.monotonic() + 5
            while group_pids(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            return self.popen.returncode
        finally:
            _LIVE_GROUPS.discard(self.pgid)
            self._log.close()


class Processes:
    """Starts processes for one test and stops every one of them at its end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[Proc] = []
        # gunicorn binds its control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/),
        # unlinking whatever is there at start and at exit: give the processes of each test their
        # own (short: a socket path must fit in 108 bytes), so a developer's own running relay
        # keeps its socket.
        self.runtime_dir = tempfile.mkdtemp(prefix="relay-e2e-")

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> Proc:
        env = dict(env)
        env.setdefault("XDG_RUNTIME_DIR", self.runtime_dir)
        proc = Proc(name, argv, env, self.log_dir / f"{name}.log", cwd)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}, exit {p.popen.returncode}) {p.log_path}\n"
                         f"{p.log_tail(lines)}" for p in self.started)


@pytest.fixture
def processes(request, tmp_path):
    """A Processes for this test; all of them are stopped when it ends, pass or fail. On failure
    the tail of every log is printed (shown by pytest under "Captured stdout teardown")."""
    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        failed = any(getattr(request.node, f"rep_{when}", None) is not None
                     and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
        procs.stop_all()
        if failed:
            print(procs.logs())


# ---------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1,
               watch: Iterable[Proc] = ()) -> T:
    """Poll `predicate` until it returns something truthy (which is returned). Fails after
    `timeout` seconds, or as soon as one of the `watch` processes has exited, with their logs."""
    watch = list(watch)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # e.g. connection refused while a server starts
            last_error = exc
        dead = [p for p in watch if not p.alive]
        if dead or time.monotonic() >= deadline:
            reason = (f"{', '.join(p.name for p in dead)} exited" if dead
                      else f"not within {timeout:.0f}s")
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            logs = "\n".join(f"----- {p.name} log:\n{p.log_tail()}" for p in watch)
            raise AssertionError(f"waiting for {what}: {reason}{detail}\n{logs}")
        time.sleep(interval)


def stays(predicate: Callable[[], bool], duration: float, what: str, interval: float = 0.1) -> None:
    """Assert `predicate` holds throughout `duration` seconds (for "nothing more happens")."""
    deadline = time.monotonic() + duration
    while True:
        assert predicate(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def wait_for_health(base_url: str, proc: Proc, timeout: float = 30.0) -> dict:
    """Wait until GET /healthz answers 200 with status ok; returns its JSON."""
    def healthy():
        response = requests.get(f"{base_url}/healthz", timeout=2)
        if response.status_code != 200:  # kept as the last error, shown if it never gets healthy
            raise RuntimeError(f"HTTP {response.status_code}: {response.text.strip()[:300]}")
        return response.json()

    body = wait_until(healthy, timeout, f"{proc.name} to answer {base_url}/healthz", interval=0.25, watch=[proc])
    assert body["status"] == "ok", body
    return body


def wait_for_log(proc: Proc, text: str, timeout: float = 30.0) -> None:
    wait_until(lambda: text in proc.log(), timeout, f"{text!r} in the {proc.name} log", watch=[proc])
