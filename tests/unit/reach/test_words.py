"""The Reach pages' words come from the one gettext catalogue (issue 20 with issue 21): adding a language is
a translator's job (`make translations`, fill its messages.po), not a new dictionary in relay/reach/; and
a Korean Reach page shows no English UI string of the catalogue, charts included."""
from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select

from relay.infra.db import transaction
from relay.model.tables import Case
from relay.reach import labels
from relay.render import i18n
from tests.console_helpers import reads_english
from tests.i18n_helpers import assert_korean
from tests.unit.reach.seed import seed, signed_in_coordinator


def test_the_words_are_catalogue_messages_not_a_dictionary_per_language():
    assert not hasattr(labels, "LABELS"), "no per-language dictionary: the catalogue translates"
    with (i18n.TRANSLATIONS_DIR / "ko" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = read_po(f, locale="ko")
    korean = labels.labels_for("ko")
    for key, message in labels.WORDS.items():
        entry = catalogue.get(message)
        assert entry is not None and entry.string, f"{message!r} is not translated in the ko catalogue"
        assert korean[key] == i18n.translate("ko", message)
    assert korean["chart_readers"] == "일별 라이브러리 독자" and labels.labels_for("en")["chart_readers"] == "Library readers per day"
    assert labels.labels_for("xx") == labels.labels_for("en")  # a language relay does not speak: English


def test_the_words_keep_their_placeholders_in_every_language():
    for language in i18n.languages():
        words = labels.labels_for(language)
        for key, message in labels.WORDS.items():
            assert set(re.findall(r"%\(\w+\)[sd]", words[key])) == set(re.findall(r"%\(\w+\)[sd]", message)), key


@pytest.fixture
def client(network):
    seed(network)
    with transaction(network.sessions) as session:  # content, not UI: the seed's English case title in Korean
        session.scalar(select(Case).where(Case.number == 2)).title = "두 번째 증례"
    with signed_in_coordinator(network, english=False) as client:  # Kim Jiwon reads Korean (her own language)
        yield client


def test_the_reach_page_in_korean_has_no_english_ui_string(client):
    page = client.get("/console/reach")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert_korean(html)
    assert "일별 라이브러리 독자" in html and "수신 단계에 따라 보류" in html and "공지별 확인 응답률" in html
    for path in ("/console/reach/cases/C1", "/console/reach?period=12m"):
        assert_korean(client.get(path).get_data(as_text=True))


def test_the_reach_page_follows_the_language_switch_and_lang(client):
    assert "Library readers per day" in reads_english(client).get("/console/reach").get_data(as_text=True)
    html = client.get("/console/reach?lang=ko").get_data(as_text=True)
    assert '<html lang="ko">' in html and "일별 라이브러리 독자" in html


@pytest.mark.parametrize("query", ["period=custom&from=2026-11-12&to=2026-11-10", "period=custom&from=nope&to=x",
                                   "period=fortnight", "period=custom&from=2020-01-01&to=2026-11-10"])
def test_a_bad_period_is_refused_in_the_readers_language(client, query):
    page = client.get(f"/console/reach?{query}")
    assert page.status_code == 400
    assert_korean(page.get_data(as_text=True))
    alert = re.search(r'class="error"[^>]*>(.*?)<', page.get_data(as_text=True), re.S)
    assert alert and re.search(r"[\uac00-\ud7a3]", alert.group(1)), page.get_data(as_text=True)[:2000]
    csv_refused = client.get(f"/console/reach.csv?chart=readers&{query}")
    assert csv_refused.status_code == 400 and re.search(r"[\uac00-\ud7a3]", csv_refused.get_data(as_text=True))


def test_every_period_error_is_a_catalogue_message_with_its_values():
    from datetime import date

    from relay.reach.periods import PeriodError, month, parse_period

    today = date(2026, 12, 6)
    asked = [({"period": "fortnight"}, "'fortnight'"), ({"period": "custom", "from": "x"}, "YYYY-MM-DD"),
             ({"period": "custom", "from": "2026-11-12", "to": "2026-11-10"}, "2026-11-12"),
             ({"period": "custom", "from": "2020-01-01", "to": "2026-11-10"}, "731")]
    errors = []
    for args, value in asked:
        with pytest.raises(PeriodError) as refused:
            parse_period(args, today)
        errors.append((refused.value, value))
    with pytest.raises(PeriodError) as refused:
        month("November")
    errors.append((refused.value, "'November'"))
    for error, value in errors:
        korean = i18n.say("ko", error)
        assert value in str(error) and value in korean, (str(error), korean)
        assert korean != str(error) and re.search(r"[\uac00-\ud7a3]", korean), korean
