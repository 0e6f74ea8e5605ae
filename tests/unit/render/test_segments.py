"""Segment counting against a table of carrier rules."""
from __future__ import annotations

import pytest

from relay.render.segments import count_segments

CASES = [
    # text, encoding, units, segments
    ("", "GSM-7", 0, 0),
    ("Hello", "GSM-7", 5, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension characters cost two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),  # the escape pair moves whole to part two
    ("{[]}~^|\\", "GSM-7", 16, 1),
    ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", "GSM-7", 41, 1),
    ("ç", "UCS-2", 1, 1),  # lowercase c-cedilla is not GSM-7 (only Ç is)
    ("á", "UCS-2", 1, 1),
    ("“quoted”", "UCS-2", 8, 1),
    ("…", "UCS-2", 1, 1),
    ("새 증례 C1", "UCS-2", 7, 1),
    ("가" * 70, "UCS-2", 70, 1),
    ("가" * 71, "UCS-2", 71, 2),
    ("가" * 134, "UCS-2", 134, 2),
    ("가" * 135, "UCS-2", 135, 3),
    ("😀", "UCS-2", 2, 1),  # outside the BMP: a surrogate pair
    ("😀" * 35, "UCS-2", 70, 1),
    ("😀" * 36, "UCS-2", 72, 2),
    ("a" * 66 + "😀" + "a" * 5, "UCS-2", 73, 2),  # the pair is not split
    ("🇰🇷", "UCS-2", 4, 1),  # a flag is two regional indicators, each a pair
    ("👩‍⚕️", "UCS-2", 5, 1),  # ZWJ sequence: woman, ZWJ, staff of aesculapius, VS16
    ("a" * 159 + "ç", "UCS-2", 160, 3),  # one non-GSM character switches the whole message
]


@pytest.mark.parametrize("text,encoding,units,segments", CASES)
def test_segments(text, encoding, units, segments):
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)
    assert count.characters == len(text)


def test_the_1600_character_cap():
    assert not count_segments("a" * 1600).too_long
    assert count_segments("a" * 1601).too_long


def test_preview_endpoint_needs_no_sign_in_but_is_rate_limited(services):
    from webhooks.app import create_app

    services.settings = services.settings.replace(preview_rate_limit="3/minute")
    client = create_app(services=services).test_client()
    response = client.post("/api/v1/sms/preview", json={"text": "새 증례 C1"})
    assert response.status_code == 200
    assert response.get_json() == {"encoding": "UCS-2", "characters": 7, "units": 7, "segments": 1,
                                   "too_long": False}
    assert client.post("/api/v1/sms/preview", json={"nope": 1}).status_code == 400
    assert client.post("/api/v1/sms/preview", json={"text": "x"}).status_code == 200
    limited = client.post("/api/v1/sms/preview", json={"text": "x"})
    assert limited.status_code == 429
