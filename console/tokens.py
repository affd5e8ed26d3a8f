"""Short-lived signed access tokens for integrations calling the JSON API (``Authorization: Bearer …``).

A JWT (RFC 7519 via pyjwt, HS256 with a key derived for this purpose only) naming the staff user it acts for,
the one clinic it is valid in and its scopes (``domain.staff_access.Permission`` values).  Every request checks
it again against the database — the user still active, still a member, the role still allowing each scope —
so disabling a user or removing them from the clinic stops their tokens at once.  Minted by an owner
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


class InvalidAccessToken(Exception):
    """The bearer token is malformed, forged, expired or not for this API (never says which, to the caller)."""


@dataclass(frozen=True)
class AccessTokenClaims:
    staff_user_id: int
    clinic_id: int
    scopes: frozenset[str]
    token_id: str
    expires_at: datetime


def mint_access_token(
    keys: ConsoleKeys,
    *,
    staff_user_id: int,
    clinic_id: int,
    scopes: frozenset[str],
    ttl_s: int,
    now: datetime | None = None,
) -> tuple[str, AccessTokenClaims]:
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = AccessTokenClaims(
        staff_user_id=staff_user_id,
        clinic_id=clinic_id,
        scopes=scopes,
        token_id=secrets.token_urlsafe(16),
        expires_at=issued + timedelta(seconds=ttl_s),
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
        )
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        raise InvalidAccessToken(type(exc).__name__) from None
