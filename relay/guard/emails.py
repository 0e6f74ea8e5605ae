"""Email addresses.

| finds | why |
|---|---|
| `name@example.org`, `j.doe+x@mail.hospital.co.kr` | an address names a person; held whoever it belongs to |

Written by hand (one regular expression) rather than with presidio's `EmailRecognizer`, which needs
tldextract and its suffix list (a download unless pinned off) to do the same; the shape alone is
enough here, and a false hit only asks the author to confirm."""
from __future__ import annotations

import re

from relay.guard.findings import EMAIL, Finding

_PATTERN = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def find(text: str) -> list[Finding]:
    if "@" not in text:
        return []
    return [Finding(EMAIL, m.start(), m.end(), 1.0) for m in _PATTERN.finditer(text)]
