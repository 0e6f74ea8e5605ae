"""Reads the labelled corpus in tests/data/guard/ (shared by the corpus test and bench/guard.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARK = re.compile(r"\[\[(\w+)\|([^\]]+)\]\]")


@dataclass(frozen=True)
class Sample:
    text: str
    identifiers: tuple[tuple[str, int, int], ...]  # (kind, start, end) in text


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("# ")]


def parse(line: str) -> Sample:
    out, spans, last = [], [], 0
    for m in MARK.finditer(line):
        out.append(line[last:m.start()])
        start = sum(len(part) for part in out)
        out.append(m[2])
        spans.append((m[1], start, start + len(m[2])))
        last = m.end()
    out.append(line[last:])
    return Sample("".join(out), tuple(spans))


def load(directory: Path) -> tuple[list[Sample], list[Sample]]:
    """(messages with identifiers, clinical messages without)."""
    return ([parse(line) for line in _lines(directory / "identifiers.txt")],
            [parse(line) for line in _lines(directory / "clinical.txt")])
