import pytest

from relay.guard import record_numbers


@pytest.mark.parametrize("text,value", [
    ("MRN 12345678, RUL", "12345678"), ("MR# 0045123", "0045123"), ("pt ID 8812345", "8812345"),
    ("accession 20231115CT0042 is", "20231115CT0042"), ("등록번호 12345678 환자", "12345678"),
    ("차트번호 C-1123 보시면", "C-1123"), ("병록번호: 5512345", "5512345"), ("hosp # 77123", "77123"),
])
def test_finds_a_number_after_its_label(text, value):
    [finding] = record_numbers.find(text)
    assert text[finding.start:finding.end] == value


@pytest.mark.parametrize("text", ["C123 and #45", "ward 7 room 712", "12345678 with no label",
                                  "Accession numbers are on PACS", "MRN unknown"])
def test_ignores_unlabelled_numbers(text):
    assert record_numbers.find(text) == []
