"""relay.guard.scan: overlaps resolved, kinds in order, masking and the description never echo a value."""
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from relay.cli import main
from relay.guard import describe, masked, scan
from relay.render import i18n

KO = i18n.translator("ko").gettext
TEXT = "C12 pt 김철수 주민번호 550315-1234567, 010-2345-6789"


def test_a_registration_number_is_not_also_a_phone_number():
    result = scan("RRN 550315-1234567")
    assert [f.kind for f in result.findings] == ["resident_number"]


def test_kinds_masking_and_description_never_carry_the_value():
    result = scan(TEXT)
    assert result.kinds == ["resident_number", "phone", "patient_name"]
    hidden = masked(TEXT, result.findings)
    for secret in ("김철수", "550315", "2345-6789"):
        assert secret not in hidden
        assert secret not in describe(TEXT, result.findings)
        assert secret not in describe(TEXT, result.findings, KO)
    assert "resident registration number" in describe(TEXT, result.findings)
    assert "주민등록번호" in describe(TEXT, result.findings, KO)


def test_relay_guard_check_prints_one_json_line_per_input_line():
    result = CliRunner().invoke(main, ["guard", "check"], input="C12 RRN 550315-1234567\nC3 CT 2024-03-15\n")
    assert result.exit_code == 0
    first, second = [json.loads(line) for line in result.output.splitlines()]
    assert first["hold"] is True and first["findings"][0]["kind"] == "resident_number"
    assert (first["findings"][0]["start"], first["findings"][0]["end"]) == (8, 22)
    assert second == {"hold": False, "kinds": [], "findings": []}


def test_relay_guard_check_runs_without_network_or_database(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RELAY_DATABASE_URL": "postgresql://nowhere:1/x",
           "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""}
    relay = Path(sys.executable).with_name("relay")
    done = subprocess.run([str(relay), "guard", "check"], input="MRN 12345678\n", capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["findings"][0]["kind"] == "record_number"


# ---------------------------------------------------------------- the author's words, from the catalogue (issue 21)

KOREAN_KINDS = {"resident_number": "주민등록번호", "phone": "전화번호", "email": "이메일 주소", "national_id": "신분증 번호",
                "record_number": "등록·차트 번호", "birth_date": "생년월일", "patient_name": "환자 이름"}


def test_the_kind_names_are_catalogue_messages_not_a_table_per_language():
    from babel.messages.pofile import read_po

    from relay.guard import KIND_NAMES, KINDS

    assert set(KIND_NAMES) == set(KINDS), "one English catalogue id per kind: the catalogue translates"
    with (i18n.TRANSLATIONS_DIR / "ko" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = read_po(f, locale="ko")
    for kind, message in KIND_NAMES.items():
        entry = catalogue.get(message)
        assert entry is not None and entry.string == KOREAN_KINDS[kind], (kind, message)


def test_the_description_reads_as_before_in_english_and_korean():
    def said(text: str, language: str) -> str:
        return describe(text, scan(text).findings, i18n.translator(language).gettext)

    text = "C12 pt RRN 550315-1234567 GGO, call 010-1234-5678"
    assert said(text, "en") == 'a resident registration number after "pt RRN"; a phone number after "GGO, call"'
    assert said(text, "ko") == '"pt RRN" 뒤의 주민등록번호; "GGO, call" 뒤의 전화번호'
    assert said("MRN: 12345678 was seen", "ko") == '"MRN:" 뒤의 등록·차트 번호'
    assert said("jiwon@example.org wrote", "en") == "an email address at the start"
    assert said("jiwon@example.org wrote", "ko") == "맨 앞의 이메일 주소"
    assert describe(text, scan(text).findings) == said(text, "en")  # no translator: the English
