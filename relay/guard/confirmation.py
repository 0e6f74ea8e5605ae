"""Coordinators' own text (notices, corrections, new cases) with a patient identifier is not sent or
published until the coordinator edits it or confirms (issue 16): `require_confirmation` raises
`IdentifiersFound`, listing each finding by field, kind and offsets (never the value); the console shows
it, the CLI asks for `--confirm-identifiers`, the API answers 409 with the findings."""
from __future__ import annotations

from collections.abc import Mapping

from relay.guard import scan


class IdentifiersFound(ValueError):
    """The text holds patient identifiers and nobody confirmed sending it as written."""

    def __init__(self, findings: list[dict]):
        self.findings = findings
        where = "; ".join(f"{f['kind']} in the {f['field']} at {f['start']}-{f['end']}" for f in findings)
        super().__init__(f"it seems to contain patient identifiers ({where}): edit it, or confirm that it "
                         "is not about a patient (--confirm-identifiers, confirm_identifiers: true)")


def findings_in(fields: Mapping[str, str | None]) -> list[dict]:
    """Each finding in each named field: {"field", "kind", "start", "end", "confidence"}."""
    found = []
    for field, text in fields.items():
        for finding in scan(text or "").findings:
            found.append({"field": field, **finding.as_dict()})
    return found


def require_confirmation(fields: Mapping[str, str | None], confirmed: bool) -> list[dict]:
    """The findings (to audit when confirmed); raises IdentifiersFound when there are some and not confirmed."""
    found = findings_in(fields)
    if found and not confirmed:
        raise IdentifiersFound(found)
    return found
