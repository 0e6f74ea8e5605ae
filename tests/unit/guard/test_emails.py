from relay.guard import emails


def test_finds_an_address_and_only_the_address():
    text = "results to jane.doe1955@gmail.com, please"
    [finding] = emails.find(text)
    assert text[finding.start:finding.end] == "jane.doe1955@gmail.com"


def test_ignores_at_signs_that_are_no_address():
    assert emails.find("dexamethasone 6 mg @ 08:00, @Dr.Park") == []
