"""Web chat: session tokens, messages, and a server-sent-events stream of replies.

A token is bound to one clinic, client and conversation; every route derives
those from the verified token, never from the request body, so a session only
ever sees its own conversation.  Replies reach the stream through a Redis
stream per conversation, so any webhook replica can serve any session and a
reconnecting browser resumes from ``Last-Event-ID``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.chat_tokens import ChatClaims, InvalidToken, issue_token, verify_token
from webhooks.http import error, read_limited_body
from webhooks.inbox import EventRejected
from webhooks.state import AppState
from webhooks.validation import UNSTORABLE_MESSAGE, unstorable_field

log = logging.getLogger(__name__)

MAX_CHAT_TEXT = 2000


def chat_stream_key(conversation_id: int) -> str:
    return f"chat:stream:{conversation_id}"


def _cors_headers(origin: str | None) -> dict[str, str]:
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "false",
        "Vary": "Origin",
    }


async def _json_body(request: Request, state: AppState) -> dict[str, Any] | Response:
    body = await read_limited_body(request, state.max_body_bytes)
    if isinstance(body, Response):
        return body
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return error(400, "body must be JSON")
    if not isinstance(data, dict):
        return error(400, "body must be a JSON object")
    bad = unstorable_field(data)
    if bad is not None:  # before anything reaches a shared insert batch
        return error(400, f"{bad} {UNSTORABLE_MESSAGE}")
    return data


def _claims(request: Request, state: AppState, *, query_token: bool = False) -> ChatClaims | Response:
    token = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    elif query_token:
        token = request.query_params.get("token")
    if not token:
        return error(401, "missing chat session token")
    try:
        return verify_token(state.chat_secret, token)
    except InvalidToken as exc:
        return error(401, str(exc))


async def preflight(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    origin = request.headers.get("origin")
    if not origin or not await state.chat_store.origin_known(origin):
        return Response(status_code=403)
    headers = _cors_headers(origin) | {
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
        "Access-Control-Max-Age": "600",
    }
    return Response(status_code=204, headers=headers)


async def create_session(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    origin = request.headers.get("origin")
    data = await _json_body(request, state)
    if isinstance(data, Response):
        return data
    clinic_key = data.get("clinic_key")
    if not isinstance(clinic_key, str) or not clinic_key:
        return error(400, "clinic_key is required")
    clinic = await state.chat_store.clinic_by_key(clinic_key)
    if clinic is None:
        return error(404, "unknown clinic_key")
    if origin is None or origin not in clinic.origins:
        log.warning("chat session refused for an origin not on the clinic's allow-list", extra={"clinic_id": clinic.id})
        return error(403, "this website is not allowed to open a chat for the clinic")
    headers = _cors_headers(origin)
    old = data.get("session_token")
    if isinstance(old, str) and old:
        try:
            claims = verify_token(state.chat_secret, old)
            if claims.clinic_id == clinic.id:
                history = await state.chat_store.history(claims.clinic_id, claims.conversation_id)
                return JSONResponse(_session_body(state, claims, clinic.name, history, old), headers=headers)
        except InvalidToken:
            pass  # expired or forged: start a fresh session below
    expires_at = int(time.time()) + state.chat_token_ttl_s
    session_id = secrets.token_hex(16)
    client_id, conversation_id = await state.chat_store.create_session(clinic.id, session_id, origin, expires_at)
    claims = ChatClaims(session_id, clinic.id, conversation_id, client_id, expires_at)
    token = issue_token(state.chat_secret, claims)
    return JSONResponse(_session_body(state, claims, clinic.name, [], token), headers=headers)


def _session_body(
    state: AppState, claims: ChatClaims, clinic_name: str, history: list[dict[str, Any]], token: str
) -> dict[str, Any]:
    return {
        "session_token": token,
        "expires_at": datetime.fromtimestamp(claims.expires_at, UTC).isoformat(),
        "conversation_id": claims.conversation_id,
        "clinic_name": clinic_name,
        "history": history,
    }


async def post_message(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = _claims(request, state)
    if isinstance(claims, Response):
        claims.headers.update(headers)
        return claims
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    data = await _json_body(request, state)
    if isinstance(data, Response):
        return data
    text, client_message_id = data.get("text"), data.get("client_message_id")
    if not isinstance(text, str) or not text.strip():
        return error(400, "text is required", headers=headers)
    if len(text) > MAX_CHAT_TEXT:
        return error(400, f"text longer than {MAX_CHAT_TEXT} characters", headers=headers)
    if not isinstance(client_message_id, str) or not 8 <= len(client_message_id) <= 64:
        return error(400, "client_message_id (8-64 characters) is required", headers=headers)
    if not await state.rate_limiter.allow(f"chat:{claims.session_id}", state.session_limit_per_min):
        return error(429, "sending too quickly; try again shortly", headers=headers | {"Retry-After": "30"})
    payload = {
        "conversation_id": claims.conversation_id,
        "client_id": claims.client_id,
        "session_id": claims.session_id,
        "body": text,
    }
    try:
        inbox_id = await state.inbox.record(
            claims.clinic_id,
            "chat",
            f"{claims.session_id}:{client_message_id}",
            f"chat:{claims.session_id}",
            payload,
            trace_id,
        )
    except EventRejected:
        return error(400, "this message cannot be stored", headers=headers)
    if inbox_id is not None:
        state.enqueuer.submit(message_for("handle_inbound_event", INBOUND_QUEUE, claims.clinic_id, inbox_id))
        # Best effort (the message is recorded): a slow or frozen Redis costs the indicator, not the 202.
        await state.redis_guard.run(
            "chat_typing",
            lambda: state.redis.xadd(
                chat_stream_key(claims.conversation_id),
                {"event": "typing", "data": json.dumps({"on": True})},
                maxlen=500,
                approximate=True,
            ),
            None,
        )
    return JSONResponse({"accepted": True}, status_code=202, headers=headers)


async def handover_to_sms(request: Request) -> Response:
    """The patient leaves a phone number to continue by text; consent is recorded with its exact wording."""
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = _claims(request, state)
    if isinstance(claims, Response):
        return claims
    data = await _json_body(request, state)
    if isinstance(data, Response):
        return data
    if data.get("consent") is not True or not isinstance(data.get("consent_text"), str):
        return error(400, "consent must be given to continue by text", headers=headers)
    try:
        parsed = phonenumbers.parse(str(data.get("phone", "")), "US")
        if not phonenumbers.is_valid_number(parsed):
            raise phonenumbers.NumberParseException(1, "invalid")
    except phonenumbers.NumberParseException:
        return error(400, "that doesn't look like a valid mobile number", headers=headers)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    await state.chat_store.record_handover(claims.clinic_id, claims.client_id, e164, str(data["consent_text"])[:1000])
    return JSONResponse({"ok": True}, headers=headers)


async def stream(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = _claims(request, state, query_token=True)
    if isinstance(claims, Response):
        return claims
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "$"
    if last_id != "$" and not _valid_stream_id(last_id):
        # An id from the history (not a stream position): replay the retained stream; the widget dedupes by id.
        last_id = "0"
    key = chat_stream_key(claims.conversation_id)

    async def events() -> AsyncIterator[bytes]:
        cursor = last_id
        yield b": connected\nretry: 2000\n\n"
        idle_rounds = 0
        while not await request.is_disconnected():
            entries: Any = await state.redis.xread({key: cursor}, block=15_000, count=50)
            if not entries:
                idle_rounds += 1
                yield b": keep-alive\n\n"
                if idle_rounds > 240:  # an hour of silence: let the browser reconnect
                    return
                continue
            idle_rounds = 0
            for entry_id, fields in entries[0][1]:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                event = fields.get(b"event", b"message").decode()
                data = fields.get(b"data", b"{}").decode()
                yield f"id: {cursor}\nevent: {event}\ndata: {data}\n\n".encode()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers=headers | {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _valid_stream_id(value: str) -> bool:
    parts = value.split("-")
    return len(parts) == 2 and all(p.isdigit() for p in parts)
