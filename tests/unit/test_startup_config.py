"""Production fails closed on configuration: the rules behind the start-up check (medspa/secrets.py) and the
settings they read (medspa/settings.py).  The real entry points are run as processes in
tests/integration/test_startup.py."""

from __future__ import annotations

import random
import secrets
import string
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from medspa.secrets import (
    EXIT_CONFIGURATION,
    check_startup,
    door_placeholder_problems,
    load_webhook_secrets,
    placeholder_reason,
    production_problems,
    startup_settings,
    stripe_webhook_secret_reason,
    twilio_auth_token_reason,
    weak_secret_reason,
)
from medspa.settings import REPO_ROOT, ConfigurationError, Environment, Settings, get_settings
from scripts.bench import BenchInfra
from tests.support import stack
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


# Values an operator types or copies from a tutorial; all but the 31-character token were accepted while the
# check knew neither that Twilio's tokens are exactly 32 hex characters nor that Stripe's part after whsec_ is random.
TYPED_WEBHOOK_SECRETS = [
    ("TWILIO_AUTH_TOKEN", "replace_with_your_twilio_auth_token", "is not a Twilio auth token"),
    ("TWILIO_AUTH_TOKEN", "example-twilio-auth-token-123456", "is not a Twilio auth token"),
    ("TWILIO_AUTH_TOKEN", "TODO_TODO_TODO_TODO_TODO_TODO_TODO", "is not a Twilio auth token"),
    ("TWILIO_AUTH_TOKEN", "abababababababababababababababab", "is not random enough"),
    ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef", "is not random enough"),
    ("TWILIO_AUTH_TOKEN", "9c1e5a7f3b2d01234567e4a6c0f1b3d5", "is not random enough"),  # a run in random hex
    ("TWILIO_AUTH_TOKEN", "9c1e5a7f3b2d8e4a6c0f1b3d5e7a9c2", "is not a Twilio auth token"),  # 31 characters
    ("TWILIO_AUTH_TOKEN", "9c1e5a7f3b2d8e4a6c0f1b3d5e7a9c2e0", "is not a Twilio auth token"),  # 33 characters
    ("STRIPE_WEBHOOK_SECRET", "whsec_testtesttesttesttesttesttest", "is not random enough"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_example_example_example_ex", "is a placeholder"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_abababababababababababababab", "is not random enough"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_MyWebhookSigningSecret2024abc", "is a placeholder"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_test_4Kp9sQ2vX7mN1rT6yB3cF8hJ5w", "is a placeholder"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_4Kp9sQ2vX7mN1rT6abcdefghJ5wL0dG2", "is not random enough"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_4b9e1f7a2c6d8e0f3a5b7c9d1e", "is too short"),  # 104 bits of hex
]


@pytest.mark.parametrize(("variable", "value", "reason"), TYPED_WEBHOOK_SECRETS)
def test_production_refuses_webhook_secrets_a_person_typed(variable: str, value: str, reason: str):
    assert production_problems(production()) == []  # so the one problem below is this value's
    problems = production_problems(production(**{variable.lower(): value}))
    assert len(problems) == 1 and problems[0].startswith(f"{variable} {reason}"), problems
    with pytest.raises(ConfigurationError) as refused:
        check_startup(production(**{variable.lower(): value}))
    message = str(refused.value)
    assert "\n" not in message and f"{variable} {reason}" in message
    assert value not in message and value[len("whsec_") :] not in message, "a secret value must never be printed"


# Shaped as the vendors issue them: Twilio's 32 hex characters (lower and upper case), Stripe's Dashboard
# secret (whsec_ and 32 letters and digits) and the Stripe CLI's (whsec_ and 64 hex characters).
REAL_TWILIO_AUTH_TOKENS = [
    "9c1e5a7f3b2d8e4a6c0f1b3d5e7a9c2e",
    "e4b7d2a9c1f5386b0a9d7e2c4f1b8356",
    "2F7B9A4C1E6D8053B7A2C9E4F1D6083A",
    "6a0afaaf8a21c0fca862a6820160aa21",  # 8 distinct characters: about one real token in 100,000 has 9 or fewer
]
REAL_STRIPE_WEBHOOK_SECRETS = [
    "whsec_4Kp9sQ2vX7mN1rT6yB3cF8hJ5wL0dG2a",
    "whsec_b3f17c2e9a4d6f805c1e7a9b3d2f4e60a8c4e2f9b7d1036e4f2a9c7e5b1d3806",
]


def test_production_accepts_webhook_secrets_shaped_as_twilio_and_stripe_issue_them():
    for token in REAL_TWILIO_AUTH_TOKENS:
        for signing in REAL_STRIPE_WEBHOOK_SECRETS:
            assert production_problems(production(twilio_auth_token=token, stripe_webhook_secret=signing)) == []


def test_a_random_twilio_token_or_stripe_secret_is_practically_never_refused():
    """The rules refuse a random token with probability under 1e-6 (see medspa/secrets.py); 1,000 draws of
    each shape would catch a rule that refuses, say, one in a thousand.  Seeded: the same draws every run."""
    draw = random.Random(20240611)
    hexdigits, alphanumeric = "0123456789abcdef", string.ascii_letters + string.digits
    for _ in range(1000):
        token = "".join(draw.choices(hexdigits, k=32))
        assert twilio_auth_token_reason(token) is None and twilio_auth_token_reason(token.upper()) is None, token
        dashboard = "whsec_" + "".join(draw.choices(alphanumeric, k=32))
        cli = "whsec_" + "".join(draw.choices(hexdigits, k=64))
        for signing in (dashboard, cli):
            assert placeholder_reason(signing) is None and stripe_webhook_secret_reason(signing) is None, signing


def test_a_run_of_eight_repeating_or_counting_characters_is_not_random():
    random_hex = "9c1e5a7f3b2d8e4a6c0f1b3d5e7a9c2e"
    for run in ("01234567", "6789abcd", "fedcba98", "aaaaaaaa", "ABCDEFGH"):
        assert "in a row" in (weak_secret_reason(random_hex[:12] + run + random_hex[20:], min_bits=0) or ""), run
        assert "in a row" in (weak_secret_reason(random_hex * 2 + run) or ""), run  # the chat secret's rule too
    # Seven is still random enough: shorter runs would start refusing real tokens.
    assert weak_secret_reason(random_hex[:12] + "0123456" + random_hex[19:], min_bits=0) is None


PLACEHOLDERS_IN_DEVELOPMENT = ["changeme", "your-key-here", "xxx", "CHANGE_ME-twilio-auth-token", "<secret>"]


@pytest.mark.parametrize("environment", ["development", "test"])
@pytest.mark.parametrize("variable", ["TWILIO_AUTH_TOKEN", "STRIPE_WEBHOOK_SECRET", "CHAT_TOKEN_SECRET"])
def test_outside_production_a_placeholder_webhook_secret_is_refused_not_used(
    tmp_path: Path, environment: str, variable: str
):
    for value in PLACEHOLDERS_IN_DEVELOPMENT:
        settings = Settings(_env_file=None, environment=environment, data_dir=tmp_path, **{variable.lower(): value})  # type: ignore[call-arg]
        with pytest.raises(ConfigurationError) as refused:
            load_webhook_secrets(settings)
        message = str(refused.value)
        assert "\n" not in message and message.startswith(f"ENVIRONMENT={environment} but {variable} is a placeholder")
        # Never the value (``xxx`` is also the rule's own name for what it found).
        assert value not in message.replace(f"{variable} {placeholder_reason(value)}", ""), message
    assert not tmp_path.joinpath("dev-secrets").exists(), "refused before anything was generated"


def test_outside_production_a_placeholder_webhook_secret_stops_every_process_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_your-key-here")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            startup_settings("worker")
    finally:
        get_settings.cache_clear()
    assert exited.value.code == EXIT_CONFIGURATION
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("medspa worker: refusing to start: ENVIRONMENT=development but STRIPE_WEBHOOK_SECRET is a")
    assert "your-key-here" not in err


def test_outside_production_a_real_looking_webhook_secret_is_used_as_set(tmp_path: Path):
    """The secrets the test stack and the benchmark set explicitly are no placeholders: they key the doors."""
    bench = BenchInfra(tmp_path, "postgresql://app@db/medspa", "postgresql://owner@db/medspa", "redis://r/0").env()
    for twilio, stripe, chat in (
        (stack.TWILIO_TOKEN, stack.STRIPE_WEBHOOK_SECRET, stack.CHAT_SECRET),
        (bench["TWILIO_AUTH_TOKEN"], bench["STRIPE_WEBHOOK_SECRET"], bench["CHAT_TOKEN_SECRET"]),
    ):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            environment="test",
            data_dir=tmp_path,
            twilio_auth_token=twilio,
            stripe_webhook_secret=stripe,
            chat_token_secret=chat,
        )
        assert door_placeholder_problems(settings) == []
        loaded = load_webhook_secrets(settings)
        assert (loaded.twilio_auth_token, loaded.stripe_webhook_secret, loaded.chat_token_secret) == (
            twilio,
            stripe,
            chat,
        )
        assert not (loaded.twilio_is_dev or loaded.stripe_is_dev)
    assert not tmp_path.joinpath("dev-secrets").exists()


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
        "whsec_your-key-here",
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
