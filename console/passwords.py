"""Password hashing: argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()
# Verified against when the account does not exist (or has no password), so a wrong email costs as long as a
# wrong password: response times do not tell which staff emails exist.
_DUMMY_HASH = _HASHER.hash("no such account: constant-time dummy")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be set, or None (length is what matters; no composition rules, per NIST 800-63B)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(set(password)) < 4:
        return "a password needs more than a few distinct characters"
    return None


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash is checked against a dummy (same cost), and fails."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
