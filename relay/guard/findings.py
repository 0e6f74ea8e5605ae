"""The one value every detector returns: what kind of identifier, where (character offsets), how sure.

Kinds are stable strings: they are stored on inbound events, counted in /metrics and named (in the
author's language) in the hold answer. The value itself is never stored or echoed: only its span."""
from __future__ import annotations

from dataclasses import dataclass

from relay.model.translatable import N_  # marks a catalogue string (relay/model/ holds no Babel)

RESIDENT_NUMBER = "resident_number"  # Korean resident / foreigner registration number
PHONE = "phone"
EMAIL = "email"
NATIONAL_ID = "national_id"  # ids with a checksum: UK NHS number, US SSN
RECORD_NUMBER = "record_number"  # MRN, chart, accession, hospital number (introduced by a label)
BIRTH_DATE = "birth_date"  # introduced by a label
PATIENT_NAME = "patient_name"

KINDS = (RESIDENT_NUMBER, PHONE, EMAIL, NATIONAL_ID, RECORD_NUMBER, BIRTH_DATE, PATIENT_NAME)

# What the author is told: the kind, never the value. English catalogue ids (issue 21): the reader's
# language comes from the one catalogue (relay/translations/), so another language is a translator's job.
KIND_NAMES = {
    RESIDENT_NUMBER: N_("a resident registration number"),
    PHONE: N_("a phone number"),
    EMAIL: N_("an email address"),
    NATIONAL_ID: N_("a national id number"),
    RECORD_NUMBER: N_("a record or chart number"),
    BIRTH_DATE: N_("a date of birth"),
    PATIENT_NAME: N_("a patient's name"),
}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    confidence: float = 0.9  # 1.0: a checksum or an explicit label proves it; lower: the shape alone

    def as_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "confidence": self.confidence}
