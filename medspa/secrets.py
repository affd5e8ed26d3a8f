"""Webhook and token secrets.

Fail closed: checks are never skipped.  In production an unset secret is a
startup error.  In development (no accounts, no keys) a random local secret is
generated once and kept in the git-ignored data folder, so the chat simulator
can sign Twilio-format webhooks exactly as Twilio would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from medspa.settings import Settings


class MissingSecret(RuntimeError):
    pass


@dataclass(frozen=True)
class WebhookSecrets:
    twilio_auth_token: str
    stripe_webhook_secret: str
    chat_token_secret: str
    twilio_is_dev: bool
    stripe_is_dev: bool


def _dev_secret(data_dir: Path, name: str) -> str:
    path = data_dir / "dev-secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def load_webhook_secrets(settings: Settings) -> WebhookSecrets:
    production = settings.environment == "production"

    def pick(value: object, name: str, env_name: str) -> tuple[str, bool]:
        if value is not None:
            return value.get_secret_value(), False  # type: ignore[attr-defined]
        if production:
            raise MissingSecret(f"{env_name} must be set in production (webhooks fail closed without it)")
        return _dev_secret(settings.data_dir, name), True

    twilio, twilio_dev = pick(settings.twilio_auth_token, "twilio_auth_token", "TWILIO_AUTH_TOKEN")
    stripe, stripe_dev = pick(settings.stripe_webhook_secret, "stripe_webhook_secret", "STRIPE_WEBHOOK_SECRET")
    chat, _ = pick(settings.chat_token_secret, "chat_token_secret", "CHAT_TOKEN_SECRET")
    return WebhookSecrets(twilio, stripe, chat, twilio_dev, stripe_dev)
