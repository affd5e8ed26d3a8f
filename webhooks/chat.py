"""Web chat: sessions, messages, and a server-sent-events stream of replies.

A token is bound to one clinic, client and conversation; every route derives
those from the verified token, never from the request body, and checks the
session server-side on every use (``ChatStore.session_active``: not revoked,
not expired, its conversation a ``chat`` conversation) — so a session only ever
sees its own chat conversation, and staff can end one early.

Abuse limits (Redis, failing open: a limit never costs a message): session
creation per client IP and per clinic; messages per session, per IP and per
clinic.  Streams: the session token never goes in a URL — the browser trades it
for a short-lived stream ticket (``POST /webhooks/chat/stream-ticket``, also
returned with the session) and opens ``GET /webhooks/chat/stream?ticket=…``;
concurrent streams are capped per IP and per process, and all of a process's
streams share one Redis connection (``webhooks.chat_streams``).  Replies reach
the stream through a Redis stream per conversation, so any webhook replica can
serve any session and a reconnecting browser resumes from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.chat_streams import parse_stream_id
from webhooks.chat_tokens import ChatClaims, InvalidToken, issue_ticket, issue_token, verify_ticket, verify_token
from webhooks.http import error, read_limited_body
from webhooks.inbox import EventRejected
from webhooks.ratelimit import passes_every_limit
from webhooks.state import AppState
from webhooks.validation import UNSTORABLE_MESSAGE, unstorable_field

log = logging.getLogger(__name__)

MAX_CHAT_TEXT = 2000
KEEPALIVE_S = 15.0
RECHECK_SESSION_EVERY = 4  # keep-alives: a revoked session's open stream ends within about a minute
MAX_IDLE_KEEPALIVES = 240  # an hour of silence: let the browser reconnect


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


def _client_ip(request: Request) -> str:
    # As uvicorn reports it: behind a reverse proxy, run uvicorn with --proxy-headers and --forwarded-allow-ips
    # set to the proxy, so this is the browser's address and not the proxy's.
    return request.client.host if request.client else "unknown"


def _too_many(message: str, headers: dict[str, str], retry_after_s: int = 30) -> Response:
    return error(429, message, headers=headers | {"Retry-After": str(retry_after_s)})


async def _json_body(
    request: Request, state: AppState, headers: dict[str, str] | None = None
) -> dict[str, Any] | Response:
    body = await read_limited_body(request, state.max_body_bytes)
    if isinstance(body, Response):
        return body
    try:
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            return error(400, "body must be a JSON object", headers=headers)
        bad = unstorable_field(data)
    except ValueError:
        return error(400, "body must be JSON", headers=headers)
    except RecursionError:  # arrays nested thousands deep: parsing (or walking) them exhausts the stack
        return error(400, "body is nested too deeply", headers=headers)
    if bad is not None:  # before anything reaches a shared insert batch
        return error(400, f"{bad} {UNSTORABLE_MESSAGE}", headers=headers)
    return data


async def _session(request: Request, state: AppState, headers: dict[str, str]) -> ChatClaims | Response:
    """The caller's session from ``Authorization: Bearer <token>``: signature, expiry, and server-side state."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not token:
        return error(401, "missing chat session token", headers=headers)
    try:
        claims = verify_token(state.chat_secret, token)
    except InvalidToken as exc:
        return error(401, str(exc), headers=headers)
    if not await state.chat_store.session_active(claims):
        return error(401, "chat session ended", headers=headers)
    return claims


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
    headers = _cors_headers(origin)
    ip = _client_ip(request)
    data = await _json_body(request, state, headers)
    if isinstance(data, Response):
        return data
    # Per IP first: before the clinic lookup, so a flood of made-up clinic keys costs nothing but a counter.
    if not await state.rate_limiter.allow(f"chat-session:ip:{ip}", state.session_ip_limit_per_min):
        return _too_many("too many chat sessions from this address; try again shortly", headers, 60)
    clinic_key = data.get("clinic_key")
    if not isinstance(clinic_key, str) or not clinic_key:
        return error(400, "clinic_key is required", headers=headers)
    clinic = await state.chat_store.clinic_by_key(clinic_key)
    if clinic is None:
        return error(404, "unknown clinic_key", headers=headers)
    if origin is None or origin not in clinic.origins:
        log.warning("chat session refused for an origin not on the clinic's allow-list", extra={"clinic_id": clinic.id})
        return error(403, "this website is not allowed to open a chat for the clinic")
    old = data.get("session_token")
    if isinstance(old, str) and old:
        try:
            claims = verify_token(state.chat_secret, old)
            if claims.clinic_id == clinic.id and await state.chat_store.session_active(claims):
                history = await state.chat_store.history(claims.clinic_id, claims.conversation_id)
                return JSONResponse(_session_body(state, claims, clinic.name, history, old), headers=headers)
        except InvalidToken:
            pass  # expired, forged or ended: start a fresh session below
    if not await state.rate_limiter.allow(f"chat-session:clinic:{clinic.id}", state.session_clinic_limit_per_min):
        return _too_many("this clinic's chat is busy; try again shortly", headers, 60)
    expires_at = int(time.time()) + state.chat_token_ttl_s
    session_id = secrets.token_hex(16)
    client_id, conversation_id = await state.chat_store.create_session(clinic.id, session_id, origin, expires_at)
    claims = ChatClaims(session_id, clinic.id, conversation_id, client_id, expires_at)
    token = issue_token(state.chat_secret, claims)
    return JSONResponse(_session_body(state, claims, clinic.name, [], token), headers=headers)


def _session_body(
    state: AppState, claims: ChatClaims, clinic_name: str, history: list[dict[str, Any]], token: str
) -> dict[str, Any]:
    ticket, ticket_expires_at = issue_ticket(state.chat_secret, claims, state.stream_ticket_ttl_s)
    return {
        "session_token": token,
        "expires_at": datetime.fromtimestamp(claims.expires_at, UTC).isoformat(),
        "conversation_id": claims.conversation_id,
        "clinic_name": clinic_name,
        "history": history,
        "stream_ticket": ticket,
        "stream_ticket_expires_at": datetime.fromtimestamp(ticket_expires_at, UTC).isoformat(),
    }


async def post_message(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = await _session(request, state, headers)
    if isinstance(claims, Response):
        return claims
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    data = await _json_body(request, state, headers)
    if isinstance(data, Response):
        return data
    text, client_message_id = data.get("text"), data.get("client_message_id")
    if not isinstance(text, str) or not text.strip():
        return error(400, "text is required", headers=headers)
    if len(text) > MAX_CHAT_TEXT:
        return error(400, f"text longer than {MAX_CHAT_TEXT} characters", headers=headers)
    if not isinstance(client_message_id, str) or not 8 <= len(client_message_id) <= 64:
        return error(400, "client_message_id (8-64 characters) is required", headers=headers)
    limits = [
        (f"chat:{claims.session_id}", state.session_limit_per_min),
        (f"chat-msg:ip:{_client_ip(request)}", state.message_ip_limit_per_min),
        (f"chat-msg:clinic:{claims.clinic_id}", state.message_clinic_limit_per_min),
    ]
    if not await state.rate_limiter.allow_all(limits) and not passes_every_limit(text):
        return _too_many("sending too quickly; try again shortly", headers)
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
            lambda: None,
        )
    return JSONResponse({"accepted": True}, status_code=202, headers=headers)


async def handover_to_sms(request: Request) -> Response:
    """The patient leaves a phone number to continue by text; consent is recorded with its exact wording."""
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = await _session(request, state, headers)
    if isinstance(claims, Response):
        return claims
    data = await _json_body(request, state, headers)
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


async def stream_ticket(request: Request) -> Response:
    """Trade the session token (a header) for a short-lived ticket to put in the stream's URL."""
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    claims = await _session(request, state, headers)
    if isinstance(claims, Response):
        return claims
    if not await state.rate_limiter.allow(f"chat-ticket:{claims.session_id}", state.session_limit_per_min):
        return _too_many("reconnecting too often; try again shortly", headers)
    ticket, expires_at = issue_ticket(state.chat_secret, claims, state.stream_ticket_ttl_s)
    body = {"ticket": ticket, "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat()}
    return JSONResponse(body, headers=headers | {"Cache-Control": "no-store"})


class _Stream(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends (finished, client gone, cancelled), so a
    stream's slot and subscription are released even when its generator never ran."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def stream(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    headers = _cors_headers(request.headers.get("origin"))
    ticket = request.query_params.get("ticket")
    if ticket:
        try:
            claims = verify_ticket(state.chat_secret, ticket)
        except InvalidToken as exc:
            return error(401, str(exc), headers=headers)
        if not await state.chat_store.session_active(claims):
            return error(401, "chat session ended", headers=headers)
    else:  # clients that can send headers may use the session token itself
        session = await _session(request, state, headers)
        if isinstance(session, Response):
            return session
        claims = session
    ip = _client_ip(request)
    if not state.stream_slots.acquire(ip):
        return _too_many("too many open chat streams; try again shortly", headers, 10)
    try:
        key = chat_stream_key(claims.conversation_id)
        subscription = state.stream_hub.subscribe(key, await _resume_position(state, key, request))
    except BaseException:
        state.stream_slots.release(ip)
        raise

    def close() -> None:
        state.stream_hub.unsubscribe(subscription)
        state.stream_slots.release(ip)

    async def events() -> AsyncIterator[bytes]:
        yield b": connected\nretry: 2000\n\n"
        idle = 0
        while not subscription.dropped:
            try:
                entry_id, fields = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                idle += 1
                if idle >= MAX_IDLE_KEEPALIVES:
                    return
                if idle % RECHECK_SESSION_EVERY == 0 and not await state.chat_store.session_active(claims):
                    yield b"event: ended\ndata: {}\n\n"  # revoked or expired: the widget renews or stops
                    return
                yield b": keep-alive\n\n"
                continue
            idle = 0
            event = fields.get(b"event", b"message").decode()
            data = fields.get(b"data", b"{}").decode()
            yield f"id: {entry_id}\nevent: {event}\ndata: {data}\n\n".encode()

    return _Stream(
        events(),
        close,
        media_type="text/event-stream",
        headers=headers | {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _resume_position(state: AppState, key: str, request: Request) -> tuple[int, int]:
    """Where the stream starts: after the browser's ``Last-Event-ID`` (a stream entry id), or after the current
    end of the stream.  An id from the history (not a stream position), or a Redis that does not answer in
    time, replays the retained stream instead — the widget dedupes by message id."""
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "$"
    if last_id != "$":
        return parse_stream_id(last_id) or (0, 0)

    async def last_entry() -> Any:
        return await state.redis.xrevrange(key, count=1)

    entries = await state.redis_guard.run("chat_stream_start", last_entry, lambda: None)
    if not entries:
        return (0, 0)
    entry_id = entries[0][0]
    return parse_stream_id(entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)) or (0, 0)
