"""Phone numbers written in the text: Korean national formats, and any number written with `+country`.

| finds | why |
|---|---|
| `010-1234-5678`, `01012345678`, `02-123-4567`, `031 123 4567`, `1588-1234` | phonenumbers' `PhoneNumberMatcher` with region `KR` and leniency `VALID`: only numbers Korea's numbering plan allows |
| `+82 10 1234 5678`, `+44 20 7946 0958`, `+1 (415) 555-0100` | the same matcher: a `+country` number is read in its own region's plan |

Not found: a number inside a DOI or after PMID (`10.1148/radiol.2020200642`, `PMID 32105562`): the matcher
is asked with region `KR`, whose plan reads fewer bare digit runs as numbers than e.g. `US`, and a match
inside a reference is dropped; ages, doses, lab values and dates, which no plan allows."""
from __future__ import annotations

import re

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

from relay.guard.findings import PHONE, Finding

_REFERENCE_BEFORE = re.compile(r"(?:doi|pmid|pmcid|isbn|issn|nct|arxiv)\s*[:#]?\s*\S*$|\d\.\d*/?\S*$", re.IGNORECASE)


def find(text: str) -> list[Finding]:
    if not any(ch.isdigit() for ch in text):
        return []
    found = []
    for match in PhoneNumberMatcher(text, "KR", leniency=Leniency.VALID):
        before = text[max(0, match.start - 24):match.start]
        if _REFERENCE_BEFORE.search(before):
            continue  # a DOI, PMID or similar reference, not a phone number
        if not phonenumbers.is_valid_number(match.number):
            continue
        found.append(Finding(PHONE, match.start, match.end, 0.95))
    return found
