"""Short-lived signed access tokens for integrations calling the JSON API (``Authorization: Bearer …``).

A JWT (RFC 7519 via pyjwt, HS256 with a key derived for this purpose only) naming the staff user it acts for,
the one clinic it is valid in, its scopes (``domain.staff_access.Permission`` values) and the credentials
version it was minted under (``pwv``: the account's ``staff_users.password_changed_at`` at mint time, see
``credentials_version``).  Every request checks it again against the database — the user still active, still a
member, the role still allowing each scope, the credentials version still the account's (``console.access``) —
so disabling a user, removing them from the clinic or setting a new password on the account (a reset by an
owner or ``medspa staff-users reset-password``) stops their tokens at once.  Minted by an owner
(``POST /api/v1/clinics/{id}/tokens``) or ``medspa staff-users token``; never by another token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from console.keys import ConsoleKeys

ISSUER = "medspa-console"
AUDIENCE = "medspa-console-api"
ALGORITHM = "HS256"
MIN_TTL_S = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class InvalidAccessToken(Exception):
    """The bearer token is malformed, forged, expired or not for this API (never says which, to the caller)."""


@dataclass(frozen=True)
class AccessTokenClaims:
    staff_user_id: int
    clinic_id: int
    scopes: frozenset[str]
    token_id: str
    expires_at: datetime
    credentials_version: int | None


def credentials_version(password_changed_at: datetime | None) -> int | None:
    """The version of an account's credentials a token carries: when its password was last set, in whole
    microseconds since the epoch (Postgres's precision — integer arithmetic, as a float timestamp would round
    two nearby changes into one), or None for an account that never had a password (single sign-on only)."""
    if password_changed_at is None:
        return None
    return (password_changed_at - _EPOCH) // _MICROSECOND


def mint_access_token(
    keys: ConsoleKeys,
    *,
    staff_user_id: int,
    clinic_id: int,
    scopes: frozenset[str],
    ttl_s: int,
    password_changed_at: datetime | None,
    now: datetime | None = None,
) -> tuple[str, AccessTokenClaims]:
    """``password_changed_at``: the subject's, read in the minting transaction (``store.StaffUser``)."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = AccessTokenClaims(
        staff_user_id=staff_user_id,
        clinic_id=clinic_id,
        scopes=scopes,
        token_id=secrets.token_urlsafe(16),
        expires_at=issued + timedelta(seconds=ttl_s),
        credentials_version=credentials_version(password_changed_at),
    )
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(staff_user_id),
        "clinic": clinic_id,
        "scope": " ".join(sorted(scopes)),
        "iat": issued,
        "nbf": issued,
        "exp": claims.expires_at,
        "jti": claims.token_id,
        "pwv": claims.credentials_version,
    }
    token = jwt.encode(payload, keys.access_token, algorithm=ALGORITHM, headers={"typ": "at+jwt"})
    return token, claims


def verify_access_token(keys: ConsoleKeys, token: str) -> AccessTokenClaims:
    try:
        payload = jwt.decode(
            token,
            keys.access_token,
            algorithms=[ALGORITHM],  # never the token's own "alg" choice
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
            leeway=5,
        )
        return AccessTokenClaims(
            staff_user_id=int(payload["sub"]),
            clinic_id=int(payload["clinic"]),
            scopes=frozenset(str(payload.get("scope", "")).split()),
            token_id=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            credentials_version=_version_claim(payload["pwv"]),  # absent (a token from before it existed): refused
        )
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        raise InvalidAccessToken(type(exc).__name__) from None


def _version_claim(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:  # we mint an integer or null: anything else is not a token of ours
        raise TypeError("pwv")
    return value
