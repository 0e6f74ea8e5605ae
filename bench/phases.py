"""Where `make bench`'s wall-clock time goes (issue 18, item 6: the whole bench within 10 minutes).

Each step of a workload (database, seeding, the measured run, its baselines, waits) is timed as a
phase; the phases are logged as they end, written to var/bench/latest.json ("phases") and summed per
workload in the report, so what is the bench's own cost and what is relay's is plain in every run."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class Phases:
    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.done: list[dict] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the block as phase `name` ("workload: step"); a failed block is recorded as failed."""
        started = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = round(time.monotonic() - started, 2)
            self.done.append({"phase": name, "seconds": seconds, **({} if ok else {"failed": True})})
            self.log(f"phase {name}: {seconds:.1f} s" + ("" if ok else " (failed)"))

    def per_workload(self) -> dict[str, float]:
        """Seconds per workload (the part of a phase's name before the colon)."""
        totals: dict[str, float] = {}
        for phase in self.done:
            workload = phase["phase"].split(":", 1)[0]
            totals[workload] = round(totals.get(workload, 0.0) + phase["seconds"], 2)
        return totals

    def summary(self) -> str:
        """One line per workload with its phases, slowest first."""
        lines = []
        for workload, seconds in self.per_workload().items():
            steps = sorted((p for p in self.done if p["phase"].split(":", 1)[0] == workload),
                           key=lambda p: -p["seconds"])
            lines.append(f"{workload} {seconds:.0f} s: " + ", ".join(
                f"{p['phase'].split(':', 1)[-1].strip()} {p['seconds']:.1f}" for p in steps))
        return "\n".join(lines)
