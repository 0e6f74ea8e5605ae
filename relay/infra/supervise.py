"""Keeping relay's processes up: start children, restart one that dies, stop them all on request.

`relay up` runs the web server and a worker this way, and `relay worker` runs its Celery worker this
way: a child killed by the kernel's OOM killer, a crash, or a Celery worker exiting when Redis
vanishes under it (docs/RELIABILITY.md section 2) is started again after a backoff (1 s doubling to
30 s; reset once the child has run STABLE_AFTER), with a log line each time, while its siblings go on
running. A restarted worker picks up what its predecessor left: tasks are acknowledged late and the
sweeper re-queues expired leases, so at most what was in flight is done twice.

No Celery or Flask here: a child is an argv."""
from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("relay.infra.supervise")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long before dying starts again after BACKOFF_START
STOP_GRACE = 15.0


def backoff_delay(failures: int, start: float = BACKOFF_START, maximum: float = BACKOFF_MAX) -> float:
    """The wait before restart number `failures` + 1 of a child dying again and again: start, 2x, 4x... max."""
    return min(maximum, start * 2 ** max(0, failures))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # deaths in a row, each after running less than STABLE_AFTER
    restart_at: float | None = None  # when a dead child is due to start again
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


@dataclass
class Supervisor:
    """Runs `children` until asked to stop; see the module docstring."""

    children: list[Child]
    backoff_start: float = BACKOFF_START
    backoff_max: float = BACKOFF_MAX
    stable_after: float = STABLE_AFTER
    clock: Callable[[], float] = time.monotonic
    stopping: list[int] = field(default_factory=list)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=child.env)
        child.started_at, child.restart_at = self.clock(), None

    def check(self) -> None:
        """Notice children that died and start those whose backoff has passed (one pass, no waiting)."""
        now = self.clock()
        for child in self.children:
            if child.proc is None or self.stopping:
                continue
            if child.restart_at is None:
                code = child.proc.poll()
                if code is None:
                    continue
                ran = now - child.started_at
                if ran >= self.stable_after:
                    child.failures = 0
                delay = backoff_delay(child.failures, self.backoff_start, self.backoff_max)
                child.failures += 1
                child.restart_at = now + delay
                log.error("%s (pid %s) %s after %.1f s; restarting it in %.0f s (restart %s)", child.name,
                          child.proc.pid, describe_exit(code), ran, delay, child.restarts + 1)
            if child.restart_at is not None and now >= child.restart_at:
                old = child.proc.pid
                self._spawn(child)
                child.restarts += 1
                log.warning("%s restarted: pid %s replaces %s", child.name, child.proc.pid, old)

    def run(self, interval: float = 0.3, on_tick: Callable[[], None] | None = None) -> None:
        """Start the children, keep them up until `stopping` is non-empty (a signal), then stop them."""
        self.start()
        try:
            while not self.stopping:
                self.check()
                if on_tick is not None:
                    on_tick()
                time.sleep(interval)
        finally:
            self.stop()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every running child, wait up to `grace` seconds, then SIGKILL what is left."""
        self.stopping.append(1)
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_on_signals(stopping: list[int]) -> None:
    """SIGINT and SIGTERM ask the supervisor to stop its children and return."""
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
