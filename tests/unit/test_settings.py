"""Settings built from a mapping of environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.platform.settings import (
    SettingsError,
    load_settings,
    require_signed_webhooks,
    settings_from_env,
)

DATABASE_URL = "postgresql://mecove:pw@db.example:5432/mecove"
REDIS_URL = "redis://cache.example:6379/0"
BASE = {"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}


def _env(**overrides: str) -> dict[str, str]:
    return {**BASE, **overrides}


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL"])
def test_a_missing_url_is_an_error_naming_the_variable(name: str) -> None:
    env = dict(BASE)
    del env[name]

    with pytest.raises(SettingsError, match=name):
        settings_from_env(env)


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL"])
def test_a_blank_url_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env(_env(**{name: "   "}))


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL"])
@pytest.mark.parametrize("value", ["mysql://x", "not a url", "http://host/db", "postgresql://",
                                   "redis://", "localhost:5432"])
def test_a_malformed_url_is_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env(_env(**{name: value}))


def test_the_error_message_is_one_line() -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from_env(_env(DATABASE_URL="mysql://x"))

    assert "\n" not in str(raised.value)


def test_a_database_url_is_not_accepted_as_the_redis_url() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        settings_from_env(_env(REDIS_URL=DATABASE_URL))


@pytest.mark.parametrize(
    ("name", "value"),
    [("DATABASE_URL", "postgres://db.example/mecove"),
     ("DATABASE_URL", "postgresql:///mecove"),
     ("REDIS_URL", "rediss://cache.example:6380"),
     ("REDIS_URL", "unix:///tmp/redis.sock")],
)
def test_the_accepted_url_schemes_are_kept_as_given(name: str, value: str) -> None:
    settings = settings_from_env(_env(**{name: value}))

    assert getattr(settings, name.lower()) == value


def test_urls_are_not_required_when_told_so() -> None:
    settings = settings_from_env({}, require_urls=False)

    assert settings.database_url == ""
    assert settings.redis_url == ""


@pytest.mark.parametrize("value", ["eighty", "80.5", "8000x", "0x1F40"])
def test_a_non_integer_port_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="MECOVE_PORT"):
        settings_from_env(_env(MECOVE_PORT=value))


@pytest.mark.parametrize(
    "name",
    ["MECOVE_PARTITIONS", "MECOVE_BATCH_SIZE", "MECOVE_RETRY_MAX_ATTEMPTS",
     "MECOVE_VISIBILITY_TIMEOUT_MS", "MECOVE_REPLIER_CONCURRENCY"],
)
def test_any_non_integer_number_is_an_error_naming_its_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env(_env(**{name: "lots"}))


def test_a_non_numeric_retry_factor_is_an_error_naming_it() -> None:
    with pytest.raises(SettingsError, match="MECOVE_RETRY_FACTOR"):
        settings_from_env(_env(MECOVE_RETRY_FACTOR="double"))


@pytest.mark.parametrize("value", ["0", "-3"])
def test_fewer_than_one_partition_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="MECOVE_PARTITIONS"):
        settings_from_env(_env(MECOVE_PARTITIONS=value))


def test_defaults_apply_when_only_the_urls_are_set() -> None:
    settings = settings_from_env(BASE)

    assert settings.database_url == DATABASE_URL
    assert settings.redis_url == REDIS_URL
    assert settings.port == 8000
    assert settings.partitions == 1
    assert settings.whatsapp_api_base_url == "https://graph.facebook.com"
    assert settings.whatsapp_api_version == "v21.0"
    assert settings.key_prefix == "mecove"
    assert settings.debug is False
    assert settings.log_level == "INFO"
    assert settings.retry_max_attempts == 3
    assert settings.retry_base_delay_ms == 1_000
    assert settings.retry_factor == 2.0
    assert settings.consumer_name


def test_blank_numbers_fall_back_to_their_defaults() -> None:
    settings = settings_from_env(_env(MECOVE_PORT="", MECOVE_PARTITIONS="  "))

    assert settings.port == 8000
    assert settings.partitions == 1


def test_given_values_override_the_defaults() -> None:
    settings = settings_from_env(_env(
        MECOVE_PORT="9001", MECOVE_PARTITIONS="4", MECOVE_KEY_PREFIX="test",
        MECOVE_DEBUG="yes", MECOVE_LOG_LEVEL="debug", MECOVE_RETRY_FACTOR="1.5",
        WHATSAPP_API_BASE_URL="http://127.0.0.1:9999/", MECOVE_CONSUMER_NAME="worker-1",
    ))

    assert settings.port == 9001
    assert settings.partitions == 4
    assert settings.key_prefix == "test"
    assert settings.debug is True
    assert settings.log_level == "DEBUG"
    assert settings.retry_factor == 1.5
    assert settings.whatsapp_api_base_url == "http://127.0.0.1:9999"
    assert settings.consumer_name == "worker-1"


def test_secrets_lists_every_configured_secret_value() -> None:
    settings = settings_from_env(_env(
        WHATSAPP_APP_SECRET="app-secret", WHATSAPP_PERMANENT_TOKEN="perm-token",
        WHATSAPP_VERIFY_TOKEN="verify-token", GROQ_API_KEY="groq-key",
        WHATSAPP_PHONE_NUMBER_ID="106540352242922",
    ))

    assert set(settings.secrets) == {"app-secret", "perm-token", "verify-token", "groq-key"}


def test_secrets_leaves_out_what_is_not_configured() -> None:
    assert settings_from_env(BASE).secrets == ()
    assert settings_from_env(_env(GROQ_API_KEY="groq-key", WHATSAPP_APP_SECRET="  ")).secrets \
        == ("groq-key",)


def test_whatsapp_is_dry_run_without_phone_number_id_and_token() -> None:
    assert settings_from_env(BASE).whatsapp_dry_run
    assert settings_from_env(_env(WHATSAPP_PHONE_NUMBER_ID="1065")).whatsapp_dry_run
    assert settings_from_env(_env(WHATSAPP_PERMANENT_TOKEN="tok")).whatsapp_dry_run


def test_whatsapp_sends_for_real_with_phone_number_id_and_token() -> None:
    settings = settings_from_env(_env(WHATSAPP_PHONE_NUMBER_ID="1065",
                                      WHATSAPP_PERMANENT_TOKEN="tok"))

    assert not settings.whatsapp_dry_run


SENDING = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0",
           "WHATSAPP_PHONE_NUMBER_ID": "1122334455667", "WHATSAPP_PERMANENT_TOKEN": "token"}


@pytest.mark.parametrize(
    ("extra", "refused"),
    [({}, True), ({"WHATSAPP_APP_SECRET": "s"}, False),
     ({"MECOVE_ALLOW_UNSIGNED_WEBHOOKS": "true"}, False)],
    ids=["sending-without-secret", "sending-with-secret", "unsigned-on-purpose"],
)
def test_an_ingress_that_sends_replies_needs_signed_webhooks(
    extra: dict[str, str], refused: bool
) -> None:
    settings = settings_from_env({**SENDING, **extra})
    if refused:
        with pytest.raises(SettingsError, match="WHATSAPP_APP_SECRET"):
            require_signed_webhooks(settings)
    else:
        require_signed_webhooks(settings)


def test_a_dry_run_ingress_needs_no_secret() -> None:
    env = {k: v for k, v in SENDING.items() if not k.startswith("WHATSAPP")}
    require_signed_webhooks(settings_from_env(env))


@pytest.mark.parametrize("command", ["api", "up"])
def test_mecove_refuses_to_start_unsigned_with_one_line(command: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), **SENDING}
    result = subprocess.run([sys.executable, "-m", "app.cli", command], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and "WHATSAPP_APP_SECRET" in lines[0]


@pytest.mark.parametrize("command", ["api", "consume", "up", "forget"])
def test_mecove_refuses_to_start_without_a_master_key_with_one_line(command: str,
                                                                     tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run([sys.executable, "-m", "app.cli", command,
                             *{"forget": ["+15550001111"], "consume": ["all"]}.get(command, [])],
                            env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and "MECOVE_MASTER_KEY is not set" in lines[0], lines


def test_a_master_key_that_is_not_32_bytes_of_base64_is_an_error_naming_it() -> None:
    with pytest.raises(SettingsError, match="MECOVE_MASTER_KEY is malformed"):
        settings_from_env(_env(MECOVE_MASTER_KEY="c2hvcnQ="))


@pytest.mark.parametrize(
    ("name", "value"),
    [("DATABASE_URL", "postgresql://mecove@db.example:54x2/mecove"),
     ("REDIS_URL", "redis://cache.example:63a9/0"),
     ("REDIS_URL", "redis://cache.example:99999/0")],
)
def test_a_url_whose_port_is_not_a_number_is_an_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} is malformed: its port"):
        settings_from_env(_env(**{name: value}))


def test_a_redis_url_whose_database_is_not_a_number_is_an_error_not_database_0() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL is malformed: the database"):
        settings_from_env(_env(REDIS_URL="redis://cache.example:6379/abc"))


def test_urls_given_to_mecove_dev_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        settings_from_env({"REDIS_URL": "redis://cache.example:6379/abc"}, require_urls=False)


def test_load_settings_says_which_variables_came_from_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={DATABASE_URL}\nMECOVE_PORT=9001\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MECOVE_PORT", "9002")
    monkeypatch.setenv("REDIS_URL", REDIS_URL)

    settings = load_settings()

    assert settings.origin("DATABASE_URL") == ".env"
    assert (settings.port, settings.origin("MECOVE_PORT")) == (9002, "the environment")
    assert settings.origin("REDIS_URL") == "the environment"


def test_load_settings_fills_unset_urls_from_a_fallback_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("REDIS_URL", REDIS_URL)

    settings = load_settings(fallback={"DATABASE_URL": DATABASE_URL, "REDIS_URL": "redis://x/1"},
                             fallback_origin="mecove dev")

    assert (settings.database_url, settings.origin("DATABASE_URL")) == (DATABASE_URL,
                                                                        "mecove dev")
    assert (settings.redis_url, settings.origin("REDIS_URL")) == (REDIS_URL, "the environment")
