"""The console's conversation actions as HTML forms (take over, reply, hand back: the same functions as the API,
through the same access check, CSRF from the form's field) and the live inbox: server-sent events from the
clinic's Redis stream (``worker/live_inbox.py``).

The event stream checks access when it opens (a signed-in member with ``conversations:read``) and ends after
``STREAM_SECONDS``; the browser's EventSource reconnects with ``Last-Event-ID`` and passes the check again, so a
signed-out or disabled user stops receiving within that time.  Events carry ids and an urgency only; a provider
(who sees only their own patients) gets the ids of their own patients' conversations and none for the others
— their page re-reads the inbox through its access checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from console.access import authenticate, authorize_clinic, check_csrf
from console.api import conversations_write
from console.api.framework import ApiCall, request_facts, request_scope, run_after_commit
from console.problems import Problem
from console.queries import conversations as conversation_queries
from console.runtime import ConsoleRuntime
from console.web.pages import error_page
from console.web.render import SECURITY_HEADERS
from domain.staff_access import Permission
from worker.live_inbox import LISTENING_TTL_S, listening_key, stream_key

log = logging.getLogger(__name__)
STREAM_SECONDS = 300
BLOCK_MS = 15_000  # also the keep-alive interval
MAX_FORM_BYTES = 16 * 1024


# ------------------------------------------------------------------ form actions
Action = Callable[[ApiCall, int, dict[str, str]], str]  # returns the notice shown after the redirect


def _take_over(call: ApiCall, conversation_id: int, _: dict[str, str]) -> str:
    conversations_write.take_over(call, conversation_id)
    return "taken-over"


def _reply(call: ApiCall, conversation_id: int, form: dict[str, str]) -> str:
    text = form.get("text", "")
    if len(text) > conversations_write.staff_takeover.MAX_REPLY_CHARS:
        raise Problem(400, "Invalid input", "The message is too long.", kind="validation")
    conversations_write.reply(call, conversation_id, text)
    return "replied"


def _hand_back(call: ApiCall, conversation_id: int, _: dict[str, str]) -> str:
    conversations_write.hand_back(call, conversation_id)
    return "handed-back"


ACTIONS: dict[str, Action] = {"takeover": _take_over, "reply": _reply, "handback": _hand_back}


def _run_action(
    runtime: ConsoleRuntime, facts: Any, path_params: dict[str, Any], action: Action, form: dict[str, str]
) -> str:
    clinic_id = int(path_params["clinic_id"])
    conversation_id = int(path_params["conversation_id"])
    with request_scope(runtime, clinic_id) as session:
        principal = authenticate(session, runtime, facts)
        check_csrf(principal, facts, runtime)
        access = authorize_clinic(session, principal, clinic_id, Permission.CONVERSATIONS_WRITE)
        call = ApiCall(runtime, session, principal, access, path_params, None, None, facts)
        notice = action(call, conversation_id, form)
    run_after_commit(call)
    return f"/clinics/{clinic_id}/conversations/{conversation_id}?done={notice}"


def _action_endpoint(runtime: ConsoleRuntime, name: str) -> Callable[[Request], Any]:
    action = ACTIONS[name]

    async def endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            return error_page(Problem(413, "Too large", "The message is too long."))
        form_data = await request.form(max_files=0, max_fields=10)
        form = {k: v for k, v in form_data.items() if isinstance(v, str)}
        facts = request_facts(request, runtime, csrf_token=form.get("csrf_token") or None)
        if facts.bearer_token is not None:
            return error_page(Problem(401, "Not signed in", "Sign in to use the console."), signed_in=False)
        try:
            target = await run_in_threadpool(_run_action, runtime, facts, dict(request.path_params), action, form)
        except Problem as problem:
            if problem.status == 401:
                back = f"/clinics/{request.path_params['clinic_id']}/conversations/{request.path_params['conversation_id']}"
                return RedirectResponse(f"/sign-in?next={quote(back, safe='')}", status_code=303)
            return error_page(problem)
        return RedirectResponse(target, status_code=303)

    return endpoint


# ------------------------------------------------------------------ the event stream
def _open_stream(runtime: ConsoleRuntime, facts: Any, clinic_id: int) -> frozenset[int] | None:
    """Access check for the stream; returns the conversations whose ids the caller may see (None: all of the
    clinic's; a provider: their own patients' as of now — the stream reopens every few minutes)."""
    with request_scope(runtime, clinic_id) as session:
        principal = authenticate(session, runtime, facts)
        access = authorize_clinic(session, principal, clinic_id, Permission.CONVERSATIONS_READ)
        if access.own_provider_id is None:
            return None
        return conversation_queries.reachable_ids(session, access.own_provider_id)


def sse_frame(entry_id: str, data: dict[str, Any]) -> bytes:
    return f"id: {entry_id}\nevent: inbox\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(
    redis_url: str, clinic_id: int, last_id: str, visible: frozenset[int] | None, request: Request
) -> AsyncIterator[bytes]:
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=3, client_name="medspa-console-live")
    key = stream_key(clinic_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_SECONDS
    try:
        # Workers publish turn events only while someone watches (worker/live_inbox.py): say so before the
        # browser sees the stream open, and again before every read.
        await _listening(client, clinic_id)
        yield b"retry: 3000\n: connected\n\n"
        if last_id == "$":  # start from now: the newest entry's id (XREAD "$" would race between reads)
            newest: Any = await client.xrevrange(key, count=1)
            last_id = newest[0][0].decode() if newest else "0-0"
        while loop.time() < deadline and not await request.is_disconnected():
            found: Any
            try:
                await _listening(client, clinic_id)
                found = await client.xread({key: last_id}, block=BLOCK_MS, count=50)
            except aioredis.RedisError as exc:
                log.warning("live inbox read failed", extra={"clinic_id": clinic_id, "error": type(exc).__name__})
                await asyncio.sleep(3)
                found = []
            if not found:
                yield b": keep-alive\n\n"
                continue
            for entry_id, fields in found[0][1]:
                last_id = entry_id.decode()
                try:
                    event = json.loads(fields.get(b"data", b"{}"))
                except ValueError:
                    continue
                if visible is not None and event.get("conversation_id") not in visible:
                    event["conversation_id"] = None  # the page re-reads its list through its access checks
                yield sse_frame(last_id, event)
    finally:
        await client.aclose()


async def _listening(client: Any, clinic_id: int) -> None:
    with contextlib.suppress(aioredis.RedisError):  # the read that follows fails too, and backs off
        await client.set(listening_key(clinic_id), b"1", ex=LISTENING_TTL_S)


def _events_endpoint(runtime: ConsoleRuntime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        clinic_id = int(request.path_params["clinic_id"])
        facts = request_facts(request, runtime)
        if facts.bearer_token is not None:
            return Response(status_code=401)
        try:
            visible = await run_in_threadpool(_open_stream, runtime, facts, clinic_id)
        except Problem as problem:
            return Response(status_code=problem.status)  # EventSource stops on a non-200 answer
        if runtime.settings.redis_url is None:
            return Response(status_code=204)  # no live events without Redis: the page refreshes on its own
        last = request.headers.get("last-event-id", "")
        last_id = last if _is_stream_id(last) else "$"
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _events(runtime.settings.redis_url, clinic_id, last_id, visible, request),
            media_type="text/event-stream",
            headers=headers,
        )

    return endpoint


def _is_stream_id(value: str) -> bool:
    parts = value.split("-")
    return len(parts) == 2 and all(p.isdigit() and len(p) < 20 for p in parts)


def routes(runtime: ConsoleRuntime) -> list[Route]:
    base = "/clinics/{clinic_id:int}/conversations/{conversation_id:int}"
    return [
        *[Route(f"{base}/{name}", _action_endpoint(runtime, name), methods=["POST"]) for name in ACTIONS],
        Route("/clinics/{clinic_id:int}/inbox/events", _events_endpoint(runtime), methods=["GET"]),
    ]
