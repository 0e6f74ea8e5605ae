"""The one value every detector returns: what kind of identifier, where (character offsets), how sure.

Kinds are stable strings: they are stored on inbound events, counted in /metrics and named (in the
author's language) in the hold answer. The value itself is never stored or echoed: only its span."""
from __future__ import annotations

from dataclasses import dataclass

RESIDENT_NUMBER = "resident_number"  # Korean resident / foreigner registration number
PHONE = "phone"
EMAIL = "email"
NATIONAL_ID = "national_id"  # ids with a checksum: UK NHS number, US SSN
RECORD_NUMBER = "record_number"  # MRN, chart, accession, hospital number (introduced by a label)
BIRTH_DATE = "birth_date"  # introduced by a label
PATIENT_NAME = "patient_name"

KINDS = (RESIDENT_NUMBER, PHONE, EMAIL, NATIONAL_ID, RECORD_NUMBER, BIRTH_DATE, PATIENT_NAME)

# What the author is told, per language: the kind, never the value.
KIND_NAMES = {
    "en": {
        RESIDENT_NUMBER: "a resident registration number",
        PHONE: "a phone number",
        EMAIL: "an email address",
        NATIONAL_ID: "a national id number",
        RECORD_NUMBER: "a record or chart number",
        BIRTH_DATE: "a date of birth",
        PATIENT_NAME: "a patient's name",
    },
    "ko": {
        RESIDENT_NUMBER: "주민등록번호",
        PHONE: "전화번호",
        EMAIL: "이메일 주소",
        NATIONAL_ID: "신분증 번호",
        RECORD_NUMBER: "등록·차트 번호",
        BIRTH_DATE: "생년월일",
        PATIENT_NAME: "환자 이름",
    },
}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    confidence: float = 0.9  # 1.0: a checksum or an explicit label proves it; lower: the shape alone

    def as_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "confidence": self.confidence}
