"""Signed, expiring web-chat session tokens (HMAC-SHA256, no server state needed to verify)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class ChatClaims:
    session_id: str
    clinic_id: int
    conversation_id: int
    client_id: int
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: str, claims: ChatClaims) -> str:
    body = _b64(
        json.dumps(
            {
                "sid": claims.session_id,
                "c": claims.clinic_id,
                "v": claims.conversation_id,
                "u": claims.client_id,
                "exp": claims.expires_at,
            },
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(secret.encode(), f"v1.{body}".encode(), hashlib.sha256).digest())
    return f"v1.{body}.{signature}"


def verify_token(secret: str, token: str, *, now: float | None = None) -> ChatClaims:
    try:
        version, body, signature = token.split(".")
    except ValueError as exc:
        raise InvalidToken("malformed token") from exc
    if version != "v1":
        raise InvalidToken("unknown token version")
    expected = _b64(hmac.new(secret.encode(), f"v1.{body}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("bad token signature")
    try:
        data = json.loads(_unb64(body))
        claims = ChatClaims(str(data["sid"]), int(data["c"]), int(data["v"]), int(data["u"]), int(data["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc
    if claims.expires_at <= (now if now is not None else time.time()):
        raise InvalidToken("token expired")
    return claims
