"""The optional TOTP second factor (RFC 6238, 30-second steps, 6 digits; pyotp).  Secrets are stored encrypted
(console/keys.py) and each code is accepted once (the last used time step is kept)."""

from __future__ import annotations

import time

import pyotp

from console.keys import ConsoleKeys

ISSUER = "MedSpa Agent console"


def new_secret() -> str:
    return pyotp.random_base32()


def encrypt_secret(keys: ConsoleKeys, secret: str) -> str:
    return keys.totp_fernet.encrypt(secret.encode()).decode()


def decrypt_secret(keys: ConsoleKeys, stored: str) -> str:
    return keys.totp_fernet.decrypt(stored.encode()).decode()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def matching_step(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to (one step of clock drift either way), or None when it is wrong or was
    already used (a step at or before ``last_step``): an observed code cannot be replayed."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    moment = time.time() if now is None else now
    current = int(moment // totp.interval)
    for step in (current, current - 1, current + 1):
        if (last_step is None or step > last_step) and pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
