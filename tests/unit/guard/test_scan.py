"""relay.guard.scan: overlaps resolved, kinds in order, masking and the description never echo a value."""
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from relay.cli import main
from relay.guard import describe, masked, scan

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
        assert secret not in describe(TEXT, result.findings, "en")
        assert secret not in describe(TEXT, result.findings, "ko")
    assert "resident registration number" in describe(TEXT, result.findings, "en")
    assert "주민등록번호" in describe(TEXT, result.findings, "ko")


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
