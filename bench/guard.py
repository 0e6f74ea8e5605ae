"""`make bench`, the patient-information guard's cost (issue 16): relay.guard.scan over the labelled corpus
(tests/data/guard/, English and Korean, with and without identifiers), single core, no database.

It prints the time per message (mean, median, p99) and what that costs the inbound processing of the
ingest workload: inbound SMS are processed at about 207 events/s on this machine (../shared/docs/PERFORMANCE.md), ~4.8 ms
of a worker's time each, so the guard's share is its mean time over 4.8 ms. Kept apart from bench/run.py
(one module per workload); BENCH_QUICK=1 runs fewer rounds."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from relay.guard import scan

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "guard"
INBOUND_EVENTS_PER_SECOND = 207  # relay's measured inbound processing rate (PERFORMANCE.md)


def messages() -> list[str]:
    import re

    texts = []
    for name in ("identifiers.txt", "clinical.txt"):
        for line in (CORPUS / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("# "):
                texts.append(re.sub(r"\[\[\w+\|([^\]]+)\]\]", r"\1", line))
    return texts


def main() -> None:
    texts = messages()
    rounds = 5 if os.environ.get("BENCH_QUICK") else 40
    for text in texts:  # warm the compiled patterns and phonenumbers' metadata
        scan(text)
    times = []
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter()
            scan(text)
            times.append(time.perf_counter() - start)
    times.sort()
    mean = statistics.fmean(times)
    share = mean * INBOUND_EVENTS_PER_SECOND
    print(f"guard: {len(texts)} messages x {rounds} rounds: mean {mean * 1e6:.0f} us, median "
          f"{times[len(times) // 2] * 1e6:.0f} us, p99 {times[int(len(times) * 0.99)] * 1e6:.0f} us per message; "
          f"{1 / mean:,.0f} messages/s on one core; {share:.1%} of a worker's time at "
          f"{INBOUND_EVENTS_PER_SECOND} inbound events/s")


if __name__ == "__main__":
    main()
