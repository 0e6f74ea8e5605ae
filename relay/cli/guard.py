"""`relay guard check`: test texts against the patient-information guard before sending them."""
from __future__ import annotations

import json
import sys

import click


@click.group("guard")
def guard() -> None:
    """The patient-information guard (see docs/guard.md)."""


@guard.command("check")
def check() -> None:
    """Read messages from standard input, one per line; print one JSON object per line.

    Each object is {"hold": true|false, "kinds": [...], "findings": [{"kind", "start", "end", "confidence"}]},
    with offsets in characters of the line. Needs no database and exits 0."""
    from relay.guard import scan

    for line in sys.stdin:
        text = line.rstrip("\r\n")
        result = scan(text)
        click.echo(json.dumps({"hold": result.hold, "kinds": result.kinds,
                               "findings": [f.as_dict() for f in result.findings]}, ensure_ascii=False))
