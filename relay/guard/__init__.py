"""The patient-information guard: finds direct patient identifiers in text before relay passes it on.

`scan(text)` runs one detector per kind of identifier (each module has a table of what it finds and
why) and returns the findings, longest-proof first where two overlap. Everything runs offline, with no
model and no data downloaded; a message of a few hundred characters takes well under a millisecond
(`make bench`).

Why these libraries and not presidio-analyzer: presidio runs offline with its `NoOpNlpEngine` and has
Korean RRN/FRN, NHS and SSN recognizers, but it pulls in spaCy (measured here: 393 MB installed, 104 s
to install, 1.5-2.8 s to import, a first call of ~230 ms), its recognizers are chosen per language so an
English-language pass misses a Korean RRN (it read `550315-1234567` as a phone number), it read the
digits of a DOI as a phone number, and names need a model it must not download. What it does well for
us comes from two small, well-kept libraries it uses or mirrors: `phonenumbers` (`PhoneNumberMatcher`,
region KR, leniency VALID) and `python-stdnum` (RRN, NHS and SSN checks). The labelled forms (record
numbers, birth dates, names) no library knows; they are short regular expressions, measured against
the corpus in `tests/data/guard/` (recall and false-hold rate in the README).

Policy (docs/guard.md): case codes, ages, scan and onset dates, vital signs, lab values, doses,
references (PMID, DOI), wards and rooms, clinicians' names and eponyms are not identifiers and are
never held."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relay.guard import birth_dates, emails, names, national_ids, phones, record_numbers, resident_numbers
from relay.guard.findings import KIND_NAMES, KINDS, Finding
from relay.model.translatable import N_

__all__ = ["KINDS", "KIND_NAMES", "Finding", "Scan", "scan", "masked", "describe", "kind_names"]

# Earlier detectors win where two findings overlap: a checksum or a label is better proof than a shape.
DETECTORS = (resident_numbers, national_ids, record_numbers, birth_dates, emails, phones, names)


@dataclass(frozen=True)
class Scan:
    findings: tuple[Finding, ...]

    @property
    def hold(self) -> bool:
        return bool(self.findings)

    @property
    def kinds(self) -> list[str]:
        """The kinds found, each once, in the order of KINDS (what is stored and counted)."""
        found = {f.kind for f in self.findings}
        return [kind for kind in KINDS if kind in found]


def scan(text: str | None) -> Scan:
    if not text:
        return Scan(())
    kept: list[Finding] = []
    for detector in DETECTORS:
        for finding in detector.find(text):
            if not any(finding.start < k.end and k.start < finding.end for k in kept):
                kept.append(finding)
    return Scan(tuple(sorted(kept, key=lambda f: (f.start, f.end))))


def masked(text: str, findings: tuple[Finding, ...] | list[Finding]) -> str:
    """The text with every finding replaced by `[kind]`: what coordinators see of a held message."""
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        out.append(text[last:f.start])
        out.append(f"[{f.kind}]")
        last = f.end
    out.append(text[last:])
    return "".join(out)


def _as_written(message: str) -> str:
    return message


def kind_names(kinds: list[str], gettext: Callable[[str], str] = _as_written) -> str:
    """The kinds found, by name in the language of `gettext` (as describe()), e.g. `a record or chart number,
    a date of birth`; a kind this relay does not know is left out."""
    return ", ".join(gettext(KIND_NAMES[kind]) for kind in kinds if kind in KIND_NAMES)


def describe(text: str, findings: tuple[Finding, ...] | list[Finding],
             gettext: Callable[[str], str] = _as_written) -> str:
    """Each finding's kind and where it is (the words before it, masked), never its value, in the language
    of `gettext` (the catalogue's, `relay.render.i18n.translator(language).gettext`; English without it).

    e.g. `a resident registration number after "C12 pt"`; `ko`: `"C12 pt" 뒤의 주민등록번호`."""
    parts = []
    for f in findings:
        before = masked(text[:f.start], [g for g in findings if g.end <= f.start]).split()[-2:]
        where, kind = " ".join(before), gettext(KIND_NAMES[f.kind])
        if where:
            parts.append(gettext(N_('%(kind)s after "%(where)s"')) % {"kind": kind, "where": where})
        else:
            parts.append(gettext(N_("%(kind)s at the start")) % {"kind": kind})
    return "; ".join(parts)
