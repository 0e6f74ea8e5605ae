"""Settings from the environment: defaults for the embedded mode, clear errors for bad values."""
from __future__ import annotations

from datetime import timedelta

import pytest

from relay.infra.settings import Settings, SettingsError, parse_duration


def test_embedded_defaults(tmp_path):
    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'relay.sqlite3'}"
    assert settings.broker_url.startswith("filesystem://")
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.reply_window == timedelta(hours=72)
    assert not settings.twilio_configured


def test_distributed_settings():
    settings = Settings.from_env({
        "RELAY_DATABASE_URL": "postgresql+psycopg://relay@db/relay", "RELAY_BROKER_URL": "redis://redis:6379/0",
        "RELAY_PUBLIC_BASE_URL": "https://relay.example.org/", "RELAY_PORT": "9000",
        "RELAY_TWILIO_ACCOUNT_SID": "AC1", "RELAY_TWILIO_AUTH_TOKEN": "t", "RELAY_TWILIO_FROM": "MG1",
        "RELAY_TWILIO_NUMBERS": "+15005550006, +15005550007", "RELAY_REPLY_WINDOW": "24h",
        "RELAY_BROKER_PREFIX": "relay-prod:"})
    assert settings.public_base_url == "https://relay.example.org"
    assert settings.port == 9000 and settings.twilio_configured and settings.uses_messaging_service
    assert settings.own_numbers == {"+15005550006", "+15005550007"}
    assert settings.reply_window == timedelta(hours=24)
    from relay.infra.dispatch import celery_config

    assert celery_config(settings)["broker_transport_options"]["global_keyprefix"] == "relay-prod:"


@pytest.mark.parametrize("text,seconds", [("72h", 259200), ("30m", 1800), ("45s", 45), ("7d", 604800), ("90", 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("env,needle", [
    ({"RELAY_REPLY_WINDOW": "three days"}, "RELAY_REPLY_WINDOW"),
    ({"RELAY_PORT": "http"}, "RELAY_PORT"),
    ({"RELAY_MAX_SEND_ATTEMPTS": "0"}, "RELAY_MAX_SEND_ATTEMPTS"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_dev_signing_token_is_stable_and_secret(tmp_path):
    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)})
    token = settings.signing_token()
    assert len(token) == 32 and token == settings.signing_token()
    assert Settings.from_env({"RELAY_VAR_DIR": str(tmp_path), "RELAY_TWILIO_AUTH_TOKEN": "x"}).signing_token() == "x"


def test_quiet_hours_setting():
    """issue 5: RELAY_QUIET_HOURS is HH:MM-HH:MM or off, and a bad value names the variable."""
    import pytest

    from relay.infra.settings import Settings, SettingsError

    assert Settings.from_env({}).quiet_hours == "22:00-07:00"
    assert Settings.from_env({"RELAY_QUIET_HOURS": "23:30-6:00"}).quiet_hours == "23:30-06:00"
    assert Settings.from_env({"RELAY_QUIET_HOURS": "OFF"}).quiet_hours == "off"
    with pytest.raises(SettingsError, match="RELAY_QUIET_HOURS"):
        Settings.from_env({"RELAY_QUIET_HOURS": "late"})


def test_spool_settings(tmp_path):
    """issue 13 item 8: the spool of webhooks kept while the database is down."""
    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)})
    assert settings.spool_path == tmp_path / "spool"
    assert (settings.spool_max_bytes, settings.spool_max_files) == (64 * 1024 * 1024, 20000)
    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path), "RELAY_SPOOL_DIR": str(tmp_path / "elsewhere"),
                                  "RELAY_SPOOL_MAX_BYTES": "1048576", "RELAY_SPOOL_MAX_FILES": "50"})
    assert settings.spool_path == tmp_path / "elsewhere"
    assert (settings.spool_max_bytes, settings.spool_max_files) == (1048576, 50)
    with pytest.raises(SettingsError, match="RELAY_SPOOL_MAX_BYTES"):
        Settings.from_env({"RELAY_SPOOL_MAX_BYTES": "1000"})
    with pytest.raises(SettingsError, match="RELAY_SPOOL_MAX_FILES"):
        Settings.from_env({"RELAY_SPOOL_MAX_FILES": "0"})


def test_dev_outbox_is_off_unless_asked_for_and_never_on_an_https_base(tmp_path):
    assert Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)}).dev_outbox is False
    assert Settings.from_env({"RELAY_VAR_DIR": str(tmp_path), "RELAY_DEV_OUTBOX": "on"}).dev_outbox is True
    with pytest.raises(SettingsError, match="RELAY_DEV_OUTBOX.*https"):
        Settings.from_env({"RELAY_DEV_OUTBOX": "on", "RELAY_PUBLIC_BASE_URL": "https://relay.example.org",
                           "RELAY_SECRET_KEY": "k" * 32}).check_startup()


def test_an_empty_secret_key_with_an_https_base_refuses_to_start(tmp_path, monkeypatch):
    """In production (an https public URL) a missing RELAY_SECRET_KEY is an error, not a new key in var/."""
    from click.testing import CliRunner

    from relay.cli import main

    env = {"RELAY_VAR_DIR": str(tmp_path), "RELAY_PUBLIC_BASE_URL": "https://relay.example.org"}
    with pytest.raises(SettingsError, match="RELAY_SECRET_KEY"):
        Settings.from_env(env).check_startup()
    Settings.from_env(env | {"RELAY_SECRET_KEY": "k" * 32}).check_startup()
    Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)}).check_startup()  # the embedded dev key is fine on http
    for name in [k for k in __import__("os").environ if k.startswith("RELAY_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in (["web"], ["worker"], ["up"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code != 0 and "RELAY_SECRET_KEY" in result.output, (command, result.output)
    from webhooks.app import create_app

    with pytest.raises(SettingsError, match="RELAY_SECRET_KEY"):
        create_app()
    assert not (tmp_path / "dev-secret-key").exists()


def test_the_sweep_period_is_a_setting_that_beat_follows(tmp_path):
    from workers.app import create_celery

    assert Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)}).sweep_every.total_seconds() == 30
    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path), "RELAY_SWEEP_EVERY": "5s"})
    schedule = create_celery(settings.replace(broker_url="memory://")).conf.beat_schedule
    assert schedule["sweep"]["schedule"] == 5 and schedule["send-scheduled-notices"]["schedule"] == 5
    assert schedule["sweep"]["options"]["expires"] == 5
    for bad in ("0s", "11m", "often"):
        with pytest.raises(SettingsError, match="RELAY_SWEEP_EVERY"):
            Settings.from_env({"RELAY_VAR_DIR": str(tmp_path), "RELAY_SWEEP_EVERY": bad})


def test_threads_making_the_dev_secret_at_once_agree_and_none_fails(tmp_path):
    """The development secret is made once from whichever writer links first; threads of one process
    each need a temporary file of their own, or one unlinks the other's before it is linked."""
    from tests.helpers import at_once

    for round_ in range(20):
        settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path / str(round_))})
        keys: list[str] = []
        errors = at_once(lambda settings=settings, keys=keys: keys.append(settings.secret()), 8)
        assert not errors, errors
        assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 32
        assert [path.name for path in (tmp_path / str(round_)).iterdir()] == ["dev-secret-key"]  # no temporary left
