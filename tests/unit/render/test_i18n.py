"""Issue 21: one message catalogue, complete in every language. Every English template has its twin in
each language relay speaks; the ko catalogue has no untranslated or fuzzy string, keeps every
placeholder, holds every string the sources mark (extracted here exactly as `make translations`
does) and is compiled; SMS and mail say labels, plurals and dates in the member's language."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from relay.infra.settings import PROJECT_ROOT
from relay.render import i18n
from relay.render.mail import case_summary, notice_subject, render_mail_template
from relay.render.texts import render_sms

TEMPLATES = PROJECT_ROOT / "templates"
OTHER_LANGUAGES = [lang for lang in i18n.languages() if lang != "en"]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def po_path(language: str) -> Path:
    return i18n.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"


def catalogue(language: str):
    with po_path(language).open("rb") as f:
        return read_po(f, locale=language)


def test_korean_is_spoken():
    from relay.model.tables import LANGUAGES  # what a member's `language` may be (CSV import, console, API)
    assert "ko" in i18n.languages()
    assert set(i18n.languages()) == set(LANGUAGES), "a catalogue for each member language, and no other"
    assert i18n.supported("ko-KR") == "ko" and i18n.supported("ko_KR") == "ko" and i18n.supported("xx") == "en"


# ---------------------------------------------------------------- twins


def english_templates() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATES)) for kind in ("sms", "email") for p in (TEMPLATES / kind / "en").iterdir()
                  if p.is_file())


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_every_english_template_has_its_twin(language):
    missing = [name for name in english_templates()
               if not (TEMPLATES / name.replace("/en/", f"/{language}/", 1)).is_file()]
    assert not missing, f"templates without their {language} twin: {missing}"


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_no_twin_without_its_english_original(language):
    for kind in ("sms", "email"):
        for path in (TEMPLATES / kind / language).iterdir():
            assert (TEMPLATES / kind / "en" / path.name).is_file(), f"{path} has no English original"


# ---------------------------------------------------------------- the catalogue


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_catalogue_has_no_untranslated_or_fuzzy_string(language):
    cat = catalogue(language)
    untranslated = [m.id for m in cat if m.id and not (all(m.string) if isinstance(m.string, tuple) else m.string)]
    fuzzy = [m.id for m in cat if m.id and m.fuzzy]
    assert not untranslated, f"untranslated in {language}: {untranslated}"
    assert not fuzzy, f"fuzzy in {language}: {fuzzy}"
    assert not cat.fuzzy, f"the {language} catalogue's header is fuzzy"


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_translations_keep_every_placeholder(language):
    """Babel's own checks (python-format placeholders, plural forms) find nothing."""
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalogue(language).check()]
    assert not problems, problems


def makefile_keywords() -> dict:
    line = next(line for line in (PROJECT_ROOT / "Makefile").read_text().splitlines()
                if line.startswith("PYBABEL_KEYWORDS"))
    return {**DEFAULT_KEYWORDS, **parse_keywords(re.findall(r"-k (\S+)", line))}


def source_messages() -> set:
    """What `make translations` extracts: babel.cfg's map, the Makefile's keywords."""
    try:
        from babel.messages.frontend import parse_mapping_cfg as parse_mapping
    except ImportError:  # Babel before 2.15
        from babel.messages.frontend import parse_mapping  # type: ignore[no-redef]
    with (PROJECT_ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping(f)
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(PROJECT_ROOT), method_map, options_map, keywords=makefile_keywords()):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_marked_string_is_in_the_catalogue():
    """A string wrapped in a template or marked in Python but not extracted (`make translations`) fails."""
    found = source_messages()
    assert {"Clinical summary", "Guideline", "%(num)d new case", "weekly digest",
            "write something before posting"} <= found  # the markers of each kind are seen
    for language in OTHER_LANGUAGES:
        known = {m.id if isinstance(m.id, str) else m.id[0] for m in catalogue(language) if m.id}
        missing = sorted(found - known)
        assert not missing, f"run `make translations`: not in the {language} catalogue: {missing}"


def _key(value):
    return value if isinstance(value, str) else tuple(value)


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_the_compiled_catalogue_is_the_current_one(language):
    """The committed .mo says exactly what the .po says (run `make translations` after editing a .po)."""
    mo = po_path(language).with_suffix(".mo")
    assert mo.is_file(), f"{mo} is missing: run `make translations`"
    with mo.open("rb") as f:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    written = {_key(m.id): _key(m.string) for m in catalogue(language) if m.id and not m.fuzzy}
    assert compiled == written, "the .mo is stale: run `make translations`"


# ---------------------------------------------------------------- SMS and mail in the member's language


def test_korean_digest_and_throttled_texts_are_korean():
    digest = render_sms(TEMPLATES, "digest", "ko", network="TFT", new_cases=2, posts=3, cases=1, guidelines=0,
                        missed=0, codes="C1 C2", library="https://x/library/")
    assert "새 증례 2건" in digest and "new case" not in digest
    throttled = render_sms(TEMPLATES, "throttled", "ko", network="TFT", limit=5)
    assert HANGUL.search(throttled) and "minute" not in throttled


def test_english_digest_counts_with_plurals_from_the_catalogue():
    one = render_sms(TEMPLATES, "digest", "en", network="TFT", new_cases=1, posts=1, cases=1, guidelines=2,
                     missed=1, codes="C1", library="L")
    assert "1 new case C1" in one and "1 post in 1 case;" in one and "2 guideline changes" in one
    assert "1 missed notice;" in one
    many = render_sms(TEMPLATES, "digest", "en", network="TFT", new_cases=3, posts=4, cases=2, guidelines=0,
                      missed=0, codes="C1 C2 C3", library="L")
    assert "3 new cases" in many and "4 posts in 2 cases" in many


@pytest.mark.parametrize("purpose", ["confirm_email_post", "confirm_subscription", "digest", "preferences_changed",
                                     "unsubscribed", "unsubscribed_digest"])
def test_every_transactional_email_is_korean_for_a_korean_member(purpose):
    content = SimpleNamespace(new_cases=[("C1", "제목", "u")], guidelines=[], missed=[],
                              discussions=[SimpleNamespace(code="C1", title="제목", count=2, latest=[], url="u")])
    context = dict(network="TFT", library="L", preferences_url="P", confirm_url="C", code="C1", text="t", hours=72, changes=["SMS: paused"],
                   period="2026-12-06", content=content, unsubscribe_url="U", label="요약")
    for ext in ("txt", "html") if purpose == "digest" else ("txt",):
        english = render_mail_template(TEMPLATES, f"{purpose}.{ext}", "en", **context)
        korean = render_mail_template(TEMPLATES, f"{purpose}.{ext}", "ko", **context)
        assert korean != english and HANGUL.search(korean), (purpose, ext)


def test_notice_labels_come_from_the_catalogue():
    assert notice_subject("ko", "guideline", "마스크", urgent=True) == "긴급 지침: 마스크"
    assert notice_subject("en", "correction", "Dose", "C4") == "[C4] Correction: Dose"
    assert notice_subject("ko", "announcement", "회의") == "공지: 회의"
    case = SimpleNamespace(chief_complaint="fever", symptoms="", exposure_history="Wuhan", findings="")
    assert case_summary(case, "ko") == [("주소", "fever"), ("노출력", "Wuhan")]  # values keep their language
    assert case_summary(case) == [("Chief complaint", "fever"), ("Exposure history", "Wuhan")]


def test_dates_in_the_readers_language_and_time_zone():
    moment = datetime(2026, 12, 6, 14, 5, tzinfo=timezone.utc)
    assert i18n.format_when(moment, "en", "UTC") == "Dec 6, 2026 14:05 UTC"
    assert i18n.format_when(moment, "ko", "Asia/Seoul") == "2026. 12. 6. 23:05 KST"
    assert i18n.format_when(moment, "en", "Not/AZone").endswith("14:05 UTC")  # an unknown zone: UTC
    assert i18n.format_number(12345, "ko") == "12,345"


def test_a_translatable_error_speaks_the_readers_language():
    from relay.discussion.web_posts import WebPostError
    error = WebPostError(i18n.N_("a post may have at most %(max)d characters"), max=5000)
    assert str(error) == "a post may have at most 5000 characters"
    assert error.in_language("ko") == "글은 최대 5000자까지 쓸 수 있습니다"


def test_a_shortened_korean_text_points_to_the_rest_in_korean():
    from relay.render.texts import fit_sms

    text = fit_sms("가" * 400, "https://x/library/cases/C1", limit=300, language="ko")
    assert len(text) == 300 and text.endswith("… (전문: https://x/library/cases/C1)")
    assert fit_sms("a" * 400, "https://x/u", limit=100).endswith("… (full text: https://x/u)")
