"""SMS segments counted the way carriers count them (3GPP TS 23.038; Twilio's segment calculator):
GSM-7 when every character is in the GSM 03.38 tables (160 septets alone, 153 per part once
concatenated, extension characters costing two), else UCS-2 (70 code units, 67 per part; characters
outside the BMP — most emoji — take two units). A part never splits an escape pair or a surrogate pair.

Written by hand: no maintained Python library does this (the references are JavaScript)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from relay.model.channels import SMS_MAX_CHARS

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # Unicode characters (code points)
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    too_long: bool  # over the 1,600 characters a provider accepts

    def as_dict(self) -> dict:
        return asdict(self)


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _parts(costs: list[int], single: int, per_part: int) -> int:
    total = sum(costs)
    if total <= single:
        return 1 if total else 0
    parts, used = 1, 0
    for cost in costs:  # greedy, never splitting a two-unit character across parts
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def count_segments(text: str) -> SegmentCount:
    text = text or ""
    if is_gsm7(text):
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
        encoding, single, per_part = "GSM-7", 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
        encoding, single, per_part = "UCS-2", 70, 67
    return SegmentCount(encoding=encoding, characters=len(text), units=sum(costs),
                        segments=_parts(costs, single, per_part), too_long=len(text) > SMS_MAX_CHARS)
