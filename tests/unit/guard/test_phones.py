import pytest

from relay.guard import phones


@pytest.mark.parametrize("text,value", [
    ("보호자 010-2345-6789 연락", "010-2345-6789"), ("call 01055551234", "01055551234"),
    ("clinic 02-3410-1234", "02-3410-1234"), ("+44 20 7946 0958 in London", "+44 20 7946 0958"),
    ("US +1 (415) 555-0132", "+1 (415) 555-0132"),
])
def test_finds_korean_and_plus_country_numbers(text, value):
    [finding] = phones.find(text)
    assert text[finding.start:finding.end] == value


@pytest.mark.parametrize("text", [
    "doi:10.1148/radiol.2020200642", "PMID 32105562", "BP 128/76, HR 104", "platelets 145,000",
    "CT 2024-03-15", "NCT04280705", "2,345 members reached", "Radiology 2020;296(2):E32-E40",
])
def test_ignores_references_dates_and_values(text):
    assert phones.find(text) == []
