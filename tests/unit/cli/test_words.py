"""Issue 15, item 10: what the commands say — plurals, help texts that tell the truth, the `relay up`
banner, and errors that name what is wrong in the user's own words."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.cli.common import counted, upgrade_database
from relay.cli.serve import up_banner
from relay.members.phones import InvalidPhone, to_e164
from relay.notices.lifecycle import NoticeError, parse_expiry
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path):
    """No database is opened here but the migration test's own SQLite files."""
    return make_settings(tmp_path / "var", f"sqlite:///{tmp_path}/words.db")


def test_counted():
    assert [counted(n, "member") for n in (0, 1, 2)] == ["0 members", "1 member", "2 members"]
    assert counted(1, "hard bounce") == "1 hard bounce"


def test_up_banner_says_email_goes_to_the_outbox_too(settings):
    banner = up_banner(settings.replace(smtp_url="", dev_outbox=True))
    assert "SMS and email go to the dev outbox at" in banner and "sign in as an admin" in banner
    assert "email go" not in up_banner(settings.replace(smtp_url="smtp://127.0.0.1:2525"))


def test_help_texts_tell_the_truth():
    runner = CliRunner()
    new_case = " ".join(runner.invoke(main, ["notice", "new-case", "--help"]).output.split())
    assert "by SMS and email" in new_case and "new-case SMS notice" not in new_case
    members_import = " ".join(runner.invoke(main, ["members", "import", "--help"]).output.split())
    assert "lists,roles[,channels]" in members_import and "--sync-lists" in members_import


def test_a_bad_phone_number_error_has_no_library_text():
    for text in ("abc", "12345"):
        with pytest.raises(InvalidPhone) as caught:
            to_e164(text)
        message = str(caught.value)
        assert message.startswith(f"{text!r} is not a phone number: write it with + and the country code")
        assert "(0)" not in message and "(1)" not in message and "string supplied" not in message


@pytest.mark.parametrize("text", ["6x", "tomorrow", "6 hours"])
def test_expiry_errors_name_the_duration_forms(text):
    with pytest.raises(NoticeError) as caught:
        parse_expiry(text)
    assert "30m, 6h, 2d" in str(caught.value) and "ISO 8601" in str(caught.value) and repr(text) in str(caught.value)


def test_the_demo_migrates_without_alembics_info_lines(settings, caplog):
    """`relay demo` upgrades quietly; `relay db upgrade` still logs what it runs."""
    import inspect

    import relay.cli.demo as demo

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    with caplog.at_level(logging.INFO):
        upgrade_database(settings.replace(database_url=f"sqlite:///{settings.var_dir}/quiet.db"), quiet=True)
    assert not [r for r in caplog.records if r.name.startswith("alembic")]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        upgrade_database(settings.replace(database_url=f"sqlite:///{settings.var_dir}/loud.db"))
    assert [r for r in caplog.records if r.name.startswith("alembic")]  # the test can see them
    assert "upgrade_database(settings, quiet=True)" in inspect.getsource(demo)
