"""Korean resident and foreigner registration numbers (주민등록번호, 외국인등록번호).

| finds | why |
|---|---|
| `YYMMDD-GNNNNNN` and `YYMMDDGNNNNNN` (13 digits) with a real date and G in 1-8 | the shape of every RRN/FRN: birth date, then sex/century/nationality digit |
| the same with the pre-October-2020 check digit right (confidence 1.0) | python-stdnum's `kr.rrn` check; numbers issued since 2020-10 have a random last digit, so a wrong check digit still counts (0.8) |

Not found: 13 digits whose first six are no date (a DOI or accession suffix), or a longer run of digits.
Written here rather than with presidio's `KrRrnRecognizer` because presidio pulls in spaCy (see the
package docstring); stdnum gives the same checksum."""
from __future__ import annotations

import re
from datetime import date

from stdnum.kr import rrn as stdnum_rrn

from relay.guard.findings import RESIDENT_NUMBER, Finding

_PATTERN = re.compile(r"(?<![\d.\-/])(\d{2})(\d{2})(\d{2})\s?[-–]?\s?([1-8])(\d{6})(?![\d\-/])")


def find(text: str) -> list[Finding]:
    found = []
    for m in _PATTERN.finditer(text):
        yy, mm, dd, g = int(m[1]), int(m[2]), int(m[3]), int(m[4])
        century = 1900 if g in (1, 2, 5, 6) else 2000
        try:
            date(century + yy, mm, dd)
        except ValueError:
            continue
        digits = m[1] + m[2] + m[3] + m[4] + m[5]
        found.append(Finding(RESIDENT_NUMBER, m.start(), m.end(), 1.0 if stdnum_rrn.is_valid(digits) else 0.8))
    return found
