"""bench/run.py wait_until_idle: a workload starts only once its worker's processes have stopped starting up."""
from __future__ import annotations

import subprocess
import sys
import time

from bench.run import wait_until_idle


def test_it_waits_while_a_process_is_busy_and_returns_once_it_is_quiet():
    # busy for ~0.6 s of CPU, then asleep: as a pool process loading its clients after Celery's "ready."
    code = ("import sys, time\nprint('busy', flush=True)\nend = time.process_time() + 0.8\n"
            "while time.process_time() < end: pass\ntime.sleep(30)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "busy"  # its busy part has begun
        started = time.monotonic()
        waited = wait_until_idle([process.pid], quiet=0.3, timeout=10)
        assert 0.6 <= waited < 5, waited  # not before its busy part is over (0.8 s of CPU), soon after
        assert time.monotonic() - started < 5
        assert wait_until_idle([process.pid], quiet=0.3, timeout=10) < 1  # quiet already: about `quiet`
    finally:
        process.kill()
        process.wait()


def test_it_gives_up_after_its_timeout_on_a_process_that_never_rests():
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert 1.0 <= wait_until_idle([process.pid], quiet=0.3, timeout=1.0) < 2.0
    finally:
        process.kill()
        process.wait()
