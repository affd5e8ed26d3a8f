from __future__ import annotations

from pathlib import Path

from medspa.settings import REPO_ROOT, Settings


def test_every_setting_is_documented_in_env_example():
    documented = (REPO_ROOT / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"{name.upper()}=" not in documented]
    assert missing == []


def test_secrets_are_secret_types():
    secret_fields = {
        "openai_api_key",
        "twilio_auth_token",
        "stripe_api_key",
        "stripe_webhook_secret",
        "chat_token_secret",
        "console_secret_key",
        "console_oidc_client_secret",
    }
    for name in secret_fields:
        assert "SecretStr" in str(Settings.model_fields[name].annotation), name


def test_settings_module_is_the_only_reader_of_configuration():
    offenders = []
    for path in REPO_ROOT.glob("*/**/*.py"):
        if path.parts[len(REPO_ROOT.parts)] in {"tests", ".venv", "scripts"} or path.name == "settings.py":
            continue
        text = Path(path).read_text()
        for variable in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "STRIPE_API_KEY"):
            if f'environ["{variable}"]' in text or f'getenv("{variable}"' in text:
                offenders.append(f"{path}:{variable}")
    assert offenders == []
