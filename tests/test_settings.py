"""Settings from the environment: defaults for the embedded mode, clear errors for bad values."""
from __future__ import annotations

from datetime import timedelta

import pytest

from relay.settings import Settings, SettingsError, parse_duration


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
    from relay.dispatch import celery_config

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

    from relay.settings import Settings, SettingsError

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
