"""Production fails closed on configuration: the rules behind the start-up check (medspa/secrets.py) and the
settings they read (medspa/settings.py).  The real entry points are run as processes in
tests/integration/test_startup.py."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from medspa.secrets import (
    EXIT_CONFIGURATION,
    check_startup,
    load_webhook_secrets,
    placeholder_reason,
    production_problems,
    startup_settings,
    weak_secret_reason,
)
from medspa.settings import REPO_ROOT, ConfigurationError, Environment, Settings, get_settings
from tests.support.production_config import DOOR_SECRETS, GOOD


def production(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **(GOOD | overrides))  # type: ignore[call-arg]


def test_a_complete_production_configuration_passes():
    assert production_problems(production()) == []
    check_startup(production())


@pytest.mark.parametrize("kind", ["empty", "placeholder", "short"])
@pytest.mark.parametrize("variable", sorted(DOOR_SECRETS))
def test_production_refuses_each_door_secret_empty_placeholder_or_short(variable: str, kind: str):
    value = DOOR_SECRETS[variable][kind]
    with pytest.raises(ConfigurationError) as refused:
        check_startup(production(**{variable.lower(): value}))
    message = str(refused.value)
    assert "\n" not in message
    assert variable in message
    assert ("unset or empty" in message) if kind == "empty" else (f"{variable} is" in message)
    if value:
        assert value not in message, "a secret value must never be printed"


def test_production_refuses_the_console_and_sink_senders_and_the_bench_model():
    for provider in ("console", "sink"):
        assert any("SMS_PROVIDER" in p for p in production_problems(production(sms_provider=provider)))
    assert any("MODEL_PROVIDER" in p for p in production_problems(production(model_provider="bench")))


def test_production_refuses_placeholder_credentials_and_embedded_servers(tmp_path: Path):
    problems = production_problems(
        production(
            openai_api_key="sk-xxxxxxxx",
            stripe_api_key="sk_live_CHANGE_ME",
            database_url="postgresql://medspa_app:CHANGE_ME-app-password@postgres:5432/medspa",
            redis_url=None,
            google_application_credentials=tmp_path / "missing.json",
        )
    )
    joined = " | ".join(problems)
    for name in ("OPENAI_API_KEY", "STRIPE_API_KEY", "DATABASE_URL's password", "REDIS_URL", "GOOGLE_APPLICATION"):
        assert name in joined
    assert "CHANGE_ME-app-password" not in joined


def test_development_and_test_generate_local_secrets_and_production_never_does(tmp_path: Path):
    for environment in ("development", "test"):
        data_dir = tmp_path / environment
        loaded = load_webhook_secrets(Settings(_env_file=None, environment=environment, data_dir=data_dir))  # type: ignore[call-arg]
        assert loaded.twilio_is_dev and loaded.stripe_is_dev
        assert len(loaded.chat_token_secret) == 64 and weak_secret_reason(loaded.chat_token_secret) is None
        assert sorted(p.name for p in (data_dir / "dev-secrets").iterdir()) == [
            "chat_token_secret",
            "stripe_webhook_secret",
            "twilio_auth_token",
        ]
    data_dir = tmp_path / "production"
    with pytest.raises(ConfigurationError):
        load_webhook_secrets(production(twilio_auth_token=None, data_dir=data_dir))
    assert not data_dir.exists()
    assert load_webhook_secrets(production(data_dir=data_dir)).twilio_auth_token == GOOD["twilio_auth_token"]


def test_environment_is_an_enum_and_a_typo_is_a_clear_start_up_error(monkeypatch, capsys):
    assert Settings(_env_file=None).environment is Environment.DEVELOPMENT  # type: ignore[call-arg]
    assert production().production
    with pytest.raises(ValidationError):
        Settings(_env_file=None, environment="prod")  # type: ignore[call-arg]
    monkeypatch.setenv("ENVIRONMENT", "prod")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="^ENVIRONMENT: Input should be 'development', 'test' or"):
            get_settings()
        with pytest.raises(SystemExit) as exited:
            startup_settings("worker")
    finally:
        get_settings.cache_clear()
    assert exited.value.code == EXIT_CONFIGURATION != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medspa worker: refusing to start: ENVIRONMENT:")


OPTIONAL = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_MESSAGING_SERVICE_SID",
    "CHAT_TOKEN_SECRET",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DATABASE_URL",
    "REDIS_URL",
]


@pytest.mark.parametrize("variable", OPTIONAL)
@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_variable_is_unset(monkeypatch, variable: str, empty: str):
    for other in OPTIONAL:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, empty)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert getattr(settings, variable.lower()) is None
    assert not settings.openai_enabled and not settings.stripe_enabled and not settings.twilio_enabled
    assert not settings.google_enabled


def _env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        if "=" in line and line.split("=", 1)[0].isupper() and " " not in line.split("=", 1)[0]:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def test_the_example_files_values_are_recognised_as_placeholders():
    """Copying deploy/compose.env.example (or .env.example) without filling it in fails closed."""
    compose = _env_file_values(REPO_ROOT / "deploy" / "compose.env.example")
    for name in ("POSTGRES_PASSWORD", "MEDSPA_APP_PASSWORD", "CHAT_TOKEN_SECRET", "TWILIO_AUTH_TOKEN"):
        assert placeholder_reason(compose[name]), name
    for name in ("TWILIO_ACCOUNT_SID", "STRIPE_WEBHOOK_SECRET"):
        assert placeholder_reason(compose[name]), name
    for name in ("STRIPE_API_KEY", "OPENAI_API_KEY"):
        assert compose[name] == "", f"{name} is optional: empty (unset) in the example"
    example = _env_file_values(REPO_ROOT / ".env.example")
    for name in ("DATABASE_URL", "MIGRATION_DATABASE_URL"):
        settings = production(**{name.lower(): example[name]})
        assert any(f"{name}'s password is a placeholder" in p for p in production_problems(settings)), name


@pytest.mark.parametrize(
    "value",
    [
        "change-me-long-random",
        "CHANGE_ME",
        "changeme",
        "your-chat-secret",
        "your_auth_token",
        "<twilio auth token>",
        "${CHAT_TOKEN_SECRET}",
        "xxx",
        "XXXXXXXX",
        "sk_test_xxx",
        "sk-xxxxxxxxxxxxxxxx",
        "whsec_...",
        "AC" + "0" * 32,
        "whsec_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "replace-me",
        "placeholder",
    ],
)
def test_placeholders_are_recognised(value: str):
    assert placeholder_reason(value)


def test_random_secrets_are_not_placeholders():
    for _ in range(200):
        for value in (secrets.token_hex(32), secrets.token_urlsafe(32), "whsec_" + secrets.token_urlsafe(24)):
            assert placeholder_reason(value) is None, value
    assert placeholder_reason(GOOD["twilio_account_sid"]) is None


def test_the_chat_secret_needs_32_bytes_of_entropy():
    assert weak_secret_reason(secrets.token_hex(32)) is None  # openssl rand -hex 32
    assert weak_secret_reason(secrets.token_urlsafe(32)) is None
    assert weak_secret_reason(secrets.token_hex(31) + "a") is not None  # 63 hex characters: 252 bits
    assert "too short" in (weak_secret_reason(secrets.token_hex(16)) or "")
    assert "too short" in (weak_secret_reason("correct horse battery staple") or "")
    assert "distinct" in (weak_secret_reason("ab" * 40) or "")
    assert "repeated pattern" in (weak_secret_reason("0123456789abcdef" * 4) or "")
