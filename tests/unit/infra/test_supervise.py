"""relay/infra/supervise.py with real child processes: a child killed with SIGKILL is started again after
its backoff, with a log line, while the others keep running; backoff doubles while a child keeps
dying and starts over once it has run stably."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from relay.infra.supervise import Child, Supervisor, backoff_delay
from tests.e2e.processes import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _dead(child: Child) -> bool:
    return child.proc.poll() is not None


def test_backoff_doubles_to_its_cap():
    assert [backoff_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_killed_child_is_restarted_after_its_backoff_and_the_others_keep_running(caplog):
    clock = Clock()
    web, worker = Child("web", SLEEPER), Child("worker", SLEEPER)
    supervisor = Supervisor([web, worker], clock=clock)
    supervisor.start()
    try:
        web_pid, first_worker = web.pid, worker.pid
        os.kill(first_worker, signal.SIGKILL)
        wait_until(lambda: _dead(worker), 10, "the worker to die")
        with caplog.at_level(logging.INFO, logger="relay.infra.supervise"):
            supervisor.check()
            assert "worker (pid %s) was killed by SIGKILL" % first_worker in caplog.text
            assert "restarting it in 1 s (restart 1)" in caplog.text
            assert worker.pid == first_worker  # not before its backoff
            clock.now += 0.5
            supervisor.check()
            assert worker.pid == first_worker
            clock.now += 0.5
            supervisor.check()
        second_worker = worker.pid
        assert second_worker != first_worker and worker.proc.poll() is None
        assert f"worker restarted: pid {second_worker} replaces {first_worker}" in caplog.text
        assert web.pid == web_pid and web.proc.poll() is None  # the web was never touched

        # dying again at once: twice the wait
        caplog.clear()
        os.kill(second_worker, signal.SIGKILL)
        wait_until(lambda: _dead(worker), 10, "the worker to die again")
        with caplog.at_level(logging.INFO, logger="relay.infra.supervise"):
            supervisor.check()
        assert "restarting it in 2 s (restart 2)" in caplog.text
        clock.now += 1.9
        supervisor.check()
        assert worker.pid == second_worker
        clock.now += 0.1
        supervisor.check()
        third_worker = worker.pid
        assert third_worker != second_worker and worker.restarts == 2

        # after running stably the backoff starts over at 1 s
        clock.now += 61
        caplog.clear()
        os.kill(third_worker, signal.SIGKILL)
        wait_until(lambda: _dead(worker), 10, "the worker to die a third time")
        with caplog.at_level(logging.INFO, logger="relay.infra.supervise"):
            supervisor.check()
        assert "restarting it in 1 s (restart 3)" in caplog.text
        assert web.pid == web_pid and web.proc.poll() is None
    finally:
        supervisor.stop(grace=5)
    assert _dead(web) and _dead(worker)


def test_run_restarts_a_dead_child_until_stopped():
    """The loop itself, on the real clock: a child that exits is back after its (short) backoff."""
    quitter = Child("quitter", [sys.executable, "-c", "pass"])
    supervisor = Supervisor([quitter], backoff_start=0.05, backoff_max=0.1)
    thread = threading.Thread(target=supervisor.run, kwargs={"interval": 0.02}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: quitter.restarts >= 3, 20, "three restarts")
    finally:
        supervisor.stopping.append(1)
        thread.join(10)
    assert not thread.is_alive()
