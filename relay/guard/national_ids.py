"""National id numbers with a checksum or a fixed shape: the UK NHS number and the US SSN.

| finds | why |
|---|---|
| `943 476 5919`, `943-476-5919` (NHS) | 3-3-4 groups with a valid modulus-11 check digit (python-stdnum `gb.nhs`) |
| `NHS 9434765919`, `NHS no. 943 476 5919` | after the label, ten digits with a valid check digit |
| `078-05-1120` (SSN) | the 3-2-4 shape with an area, group and serial that can be issued (python-stdnum `us.ssn`) |
| `SSN 078051120` | after the label, nine digits that can be issued |

Not found: a bare run of ten digits without a label or the NHS grouping (one random number in eleven
passes the check), nor nine bare digits: too many accession and lab numbers look like that."""
from __future__ import annotations

import re

from stdnum.gb import nhs
from stdnum.us import ssn

from relay.guard.findings import NATIONAL_ID, Finding

_NHS_GROUPED = re.compile(r"(?<![\d-])\d{3}[ -]\d{3}[ -]\d{4}(?![\d-])")
_NHS_LABELLED = re.compile(r"\bNHS\s*(?:no\.?|number|#)?\s*[:#]?\s*(\d{3}[ -]?\d{3}[ -]?\d{4})(?!\d)", re.IGNORECASE)
_SSN_SHAPE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_SSN_LABELLED = re.compile(r"\b(?:SSN|social security(?: number| no\.?)?)\s*[:#]?\s*(\d{3}[ -]?\d{2}[ -]?\d{4})(?!\d)",
                           re.IGNORECASE)


def find(text: str) -> list[Finding]:
    found = []
    for m in _NHS_GROUPED.finditer(text):
        if nhs.is_valid(m.group()):
            found.append(Finding(NATIONAL_ID, m.start(), m.end(), 1.0))
    for m in _NHS_LABELLED.finditer(text):
        if nhs.is_valid(m[1]):
            found.append(Finding(NATIONAL_ID, m.start(1), m.end(1), 1.0))
    for m in _SSN_SHAPE.finditer(text):
        if ssn.is_valid(m.group()):
            found.append(Finding(NATIONAL_ID, m.start(), m.end(), 0.9))
    for m in _SSN_LABELLED.finditer(text):
        if ssn.is_valid(m[1].replace(" ", "-")):
            found.append(Finding(NATIONAL_ID, m.start(1), m.end(1), 1.0))
    return found
