import pytest

from relay.guard import resident_numbers


@pytest.mark.parametrize("text,confidence", [
    ("RRN 900101-1234568", None), ("주민번호 5503151234567", None), ("FRN 851130-6234567", None),
    ("910101 - 2345678", None),
])
def test_finds_rrn_and_frn_with_or_without_dash(text, confidence):
    [finding] = resident_numbers.find(text)
    assert text[finding.start:finding.end].replace(" ", "").replace("-", "")[-7:].isdigit()


def test_a_right_check_digit_raises_confidence_but_a_wrong_one_still_counts():
    import stdnum.kr.rrn as rrn

    valid = next(f"550315-1{n:06d}" for n in range(1000) if rrn.is_valid(f"5503151{n:06d}"))
    invalid = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert resident_numbers.find(valid)[0].confidence == 1.0
    assert resident_numbers.find(invalid)[0].confidence < 1.0


@pytest.mark.parametrize("text", [
    "doi 10.1148/radiol.2020200642", "991399-1234567", "550315-9234567", "acc 12345505151234567",
    "2024-03-15 1234567", "WBC 12,400",
])
def test_ignores_what_is_no_registration_number(text):
    assert resident_numbers.find(text) == []
