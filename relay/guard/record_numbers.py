"""Medical record, chart, accession and hospital numbers, introduced by a label.

| finds | why |
|---|---|
| `MRN 12345678`, `MR# 0045123`, `MRN: A-443210` | the label clinicians write before a record number |
| `pt ID 8812345`, `patient id: KS-99812`, `hospital no. 5512`, `hosp # 77123`, `unit no 44512` | the same for patient and hospital numbers |
| `accession 20231115CT0042`, `acc# RX-55612`, `chart no. 3312`, `chart # 88121` | accession and chart numbers lead back to the study and the patient |
| `등록번호 12345678`, `병록번호: 5512345`, `환자번호 889912`, `차트번호 C-1123`, `병원번호 44521`, `진료번호 77812` | the Korean labels |

The number must hold a digit and be at least three characters long. Not found: the same digits with no
label (a case code `C123`, `#45`, a ward or room, a dose or a lab value), because a bare number says
nothing about whose it is. Written by hand: no library knows these labels; presidio has no recognizer
for them either."""
from __future__ import annotations

import re

from relay.guard.findings import RECORD_NUMBER, Finding

_EN_LABELS = (
    r"MRN|MR\s?#|MR\s+no\.?|medical\s+record(?:\s+(?:no\.?|number|#))?|record\s+(?:no\.?|number|#)|"
    r"(?:patient|pt\.?)\s*(?:ID|no\.?|number|#)|hospital\s*(?:no\.?|number|#|ID)|hosp\.?\s*(?:no\.?|#|ID)|"
    r"unit\s+(?:no\.?|number)|accession(?:\s+(?:no\.?|number|#))?|acc\.?\s*(?:no\.?|#)|"
    r"chart\s*(?:no\.?|number|#)|case\s+note\s+(?:no\.?|number)"
)
_KO_LABELS = r"등록\s?번호|병록\s?번호|환자\s?번호|차트\s?번호|병원\s?번호|진료\s?번호|의무기록\s?번호|검사\s?번호|환자\s?ID"
_NUMBER = r"([A-Za-z]{0,4}[-]?\d[\dA-Za-z-]{2,})"
_PATTERN = re.compile(rf"(?:\b(?:{_EN_LABELS})|(?:{_KO_LABELS}))\s*(?:[:=#]|is|은|는)?\s*(?:#\s*)?{_NUMBER}",
                      re.IGNORECASE)


def find(text: str) -> list[Finding]:
    found = []
    for m in _PATTERN.finditer(text):
        value = m[1].rstrip("-")
        if sum(ch.isdigit() for ch in value) < 3:
            continue
        found.append(Finding(RECORD_NUMBER, m.start(1), m.start(1) + len(value), 1.0))
    return found
