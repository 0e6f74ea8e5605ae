import pytest

from relay.guard import national_ids


@pytest.mark.parametrize("text", ["NHS 943 476 5919", "943-476-5919 on the label", "NHS no. 4010232137",
                                  "SSN 536-22-1234", "536-22-1234 on the form", "social security number 412 55 6789"])
def test_finds_nhs_and_ssn(text):
    assert len(national_ids.find(text)) >= 1


@pytest.mark.parametrize("text", ["943 476 5918 (bad check digit)", "4010232137 with no label",
                                  "000-12-3456", "666-12-3456", "SSN 078-05-1120"])
def test_ignores_numbers_that_fail_the_check_or_lack_the_label(text):
    assert national_ids.find(text) == []
