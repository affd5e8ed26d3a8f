"""Signed, expiring web-chat session tokens and stream tickets (HMAC-SHA256).

The signature proves who issued a token; it does not prove the session is still
open — routes also check the session server-side (``ChatStore.session_active``:
not revoked, and its conversation is a chat conversation).

A *stream ticket* is the short-lived (a minute) credential the browser puts in
the stream URL (``EventSource`` cannot send headers), so the long-lived session
token never appears in URLs — server logs, proxies, browser history.  Tickets
and session tokens carry different version tags inside the signed text, so
neither is accepted as the other.
"""

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


_SESSION = "v1"
_TICKET = "t1"


def issue_token(secret: str, claims: ChatClaims) -> str:
    return _issue(secret, _SESSION, claims)


def verify_token(secret: str, token: str, *, now: float | None = None) -> ChatClaims:
    return _verify(secret, _SESSION, token, now)


def issue_ticket(secret: str, claims: ChatClaims, ttl_s: int, *, now: float | None = None) -> tuple[str, int]:
    """A stream ticket for the session ``claims`` names, valid ``ttl_s`` (never past the session's own expiry);
    returns the ticket and its expiry (unix seconds)."""
    expires_at = min(claims.expires_at, int(now if now is not None else time.time()) + ttl_s)
    ticket_claims = ChatClaims(
        claims.session_id, claims.clinic_id, claims.conversation_id, claims.client_id, expires_at
    )
    return _issue(secret, _TICKET, ticket_claims), expires_at


def verify_ticket(secret: str, ticket: str, *, now: float | None = None) -> ChatClaims:
    return _verify(secret, _TICKET, ticket, now)


def _issue(secret: str, version: str, claims: ChatClaims) -> str:
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
    signature = _b64(hmac.new(secret.encode(), f"{version}.{body}".encode(), hashlib.sha256).digest())
    return f"{version}.{body}.{signature}"


def _verify(secret: str, expected_version: str, token: str, now: float | None) -> ChatClaims:
    try:
        version, body, signature = token.split(".")
    except ValueError as exc:
        raise InvalidToken("malformed token") from exc
    if version != expected_version:
        raise InvalidToken("unknown token version" if version not in (_SESSION, _TICKET) else "wrong kind of token")
    expected = _b64(hmac.new(secret.encode(), f"{version}.{body}".encode(), hashlib.sha256).digest())
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
