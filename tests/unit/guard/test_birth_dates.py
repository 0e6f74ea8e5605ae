import pytest

from relay.guard import birth_dates


@pytest.mark.parametrize("text,value", [
    ("DOB 1955-03-15, smoker", "1955-03-15"), ("D.O.B.: 15/03/1955", "15/03/1955"),
    ("date of birth 1955.03.15", "1955.03.15"), ("생년월일 1955년 3월 15일", "1955년 3월 15일"),
    ("born 15 March 1955 in Busan", "15 March 1955"), ("생년월일: 550315", "550315"),
])
def test_finds_a_labelled_birth_date(text, value):
    [finding] = birth_dates.find(text)
    assert text[finding.start:finding.end] == value


@pytest.mark.parametrize("text", ["CT 2024-03-15", "onset 03/10, admitted 03/12", "born between 1940 and 1960",
                                  "65세 남자", "2024년 3월 15일 CT"])
def test_ignores_dates_without_the_label_and_bare_years(text):
    assert birth_dates.find(text) == []
