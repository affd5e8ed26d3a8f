"""A complete, valid production configuration, and the bad values an operator leaves behind for each secret
that guards a door: shared by the start-up rule tests and the start-up process matrix."""

from __future__ import annotations

import secrets

GOOD = {
    "environment": "production",
    "database_url": "postgresql+psycopg://medspa_app:Q3v9wLr2pT8xKd4m@db:5432/medspa",
    "redis_url": "redis://redis:6379/0",
    "twilio_account_sid": "AC" + "3f9a6c2e1b7d4085" * 2,
    "twilio_auth_token": "9c1e5a7f3b2d8e4a6c0f1b3d5e7a9c2e",
    "stripe_webhook_secret": "whsec_4Kp9sQ2vX7mN1rT6yB3cF8hJ5wL0dG2a",
    "chat_token_secret": "5e1f0c7a9b3d2e8f4a6c1b7d9e0f3a5c2b8d4e6f1a3c5e7b9d0f2a4c6e8b1d3f",
}

# Empty, an example value, too short / too weak.
DOOR_SECRETS: dict[str, dict[str, str]] = {
    "TWILIO_AUTH_TOKEN": {"empty": "", "placeholder": "CHANGE_ME-twilio-auth-token", "short": "9c1e5a7f3b2d8e4a"},
    "STRIPE_WEBHOOK_SECRET": {"empty": "", "placeholder": "whsec_xxx", "short": "whsec_4Kp9sQ2v"},
    "CHAT_TOKEN_SECRET": {"empty": "", "placeholder": "change-me-long-random", "short": secrets.token_hex(16)},
    "TWILIO_ACCOUNT_SID": {"empty": "", "placeholder": "AC" + "x" * 32, "short": "AC3f9a6c"},
}
