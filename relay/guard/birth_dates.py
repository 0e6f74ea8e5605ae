"""Dates of birth, introduced by a label.

| finds | why |
|---|---|
| `DOB 1955-03-15`, `D.O.B.: 15/03/1955`, `date of birth 1955.03.15`, `born 15 March 1955`, `b. March 15, 1955` | a full birth date names the patient together with anything else in the message |
| `생년월일 1955년 3월 15일`, `생년월일: 550315`, `출생일 1955.3.15`, `생일 1955-03-15` | the Korean labels and the written forms `YYYY년 M월 D일` and `YYMMDD` |

Not found: a date with no such label (a scan, onset or admission date, `CT 2024-03-15`), an age
(`65세`, `65M`), or a year alone (`born 1955` says no more than an age). Written by hand: the label
is what makes a date a birth date, and no library reads that."""
from __future__ import annotations

import re

from relay.guard.findings import BIRTH_DATE, Finding

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{4}\s?[-./]\s?\d{1,2}\s?[-./]\s?\d{1,2}\.?"  # 1955-03-15, 1955.03.15, 1955/3/15
    r"|\d{1,2}\s?[-./]\s?\d{1,2}\s?[-./]\s?\d{2,4}"  # 15/03/1955, 03-15-1955, 15.03.55
    r"|\d{4}\s?년\s?\d{1,2}\s?월\s?\d{1,2}\s?일"  # 1955년 3월 15일
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}}"  # 15 March 1955
    rf"|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # March 15, 1955
    r"|\d{6}(?!\d)|\d{8}(?!\d))"  # 550315, 19550315
)
_LABELS = r"(?:\bD\.?O\.?B\.?|\bdate\s+of\s+birth|\bborn(?:\s+on)?|\bb\.|\bbirth\s?date|생년월일|출생일|생일)"
_PATTERN = re.compile(rf"{_LABELS}\s*(?:[:=]|is|은|는)?\s*({_DATE})", re.IGNORECASE)


def find(text: str) -> list[Finding]:
    return [Finding(BIRTH_DATE, m.start(1), m.end(1), 1.0) for m in _PATTERN.finditer(text)]
