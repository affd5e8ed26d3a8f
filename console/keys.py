"""Keys derived from CONSOLE_SECRET_KEY, one per purpose (HKDF-SHA256), so no two uses share a key: a token
signed for one purpose can never be replayed as another, and rotating the secret rotates them all."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import cached_property

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"medspa-console", info=purpose.encode()).derive(
        secret.encode()
    )


@dataclass(frozen=True)
class ConsoleKeys:
    secret: str

    @cached_property
    def access_token(self) -> bytes:
        """HS256 key of API access tokens (console/tokens.py)."""
        return _derive(self.secret, "api-access-token")

    @cached_property
    def oidc_state(self) -> bytes:
        """HS256 key of the short-lived cookie carrying OIDC state, nonce and PKCE verifier."""
        return _derive(self.secret, "oidc-state")

    @cached_property
    def totp_fernet(self) -> Fernet:
        """Encrypts TOTP secrets at rest: a database reader cannot mint second-factor codes."""
        return Fernet(base64.urlsafe_b64encode(_derive(self.secret, "totp-secret")))

    @cached_property
    def _attempt_key(self) -> bytes:
        return _derive(self.secret, "login-attempt-account")

    def account_key(self, email: str) -> str:
        """The sign-in attempt table's key for a typed email (an HMAC, so the table holds no email)."""
        return hmac.new(self._attempt_key, email.strip().lower().encode(), hashlib.sha256).hexdigest()
