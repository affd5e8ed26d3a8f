"""Request metrics (a thin ASGI middleware) and the metrics listener.

``/metrics`` is not a route of the public app: it is served by a separate,
minimal listener on ``WEBHOOK_METRICS_HOST:WEBHOOK_METRICS_PORT`` (loopback by
default), so nothing on the port the internet reaches (Twilio, Stripe, the chat
widget) exposes queue depths, rates or error counts.  Every uvicorn worker
process binds it with SO_REUSEPORT; a scrape reaches one of them (the same as a
scrape through the public port did).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medspa import metrics
from medspa.broker import BULK_QUEUE, INBOUND_QUEUE, OUTBOX_QUEUE, SCHEDULED_QUEUE, TURNS_QUEUE

log = logging.getLogger(__name__)

_KNOWN_ROUTES = (
    "/webhooks/twilio/sms",
    "/webhooks/twilio/status",
    "/webhooks/stripe",
    "/webhooks/chat/session",
    "/webhooks/chat/messages",
    "/webhooks/chat/stream",
    "/webhooks/chat/stream-ticket",
    "/webhooks/chat/handover",
    "/healthz",
    "/readyz",
)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _KNOWN_ROUTES else "other"
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if route != "/webhooks/chat/stream":  # a stream's latency is its lifetime: count, don't time
                    metrics.webhook_latency.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.webhook_requests.labels(route, str(status)).inc()


async def exposition(state: Any) -> bytes:
    """This process's metrics, with the queue depths read from Redis (best effort)."""
    queues = (INBOUND_QUEUE, TURNS_QUEUE, OUTBOX_QUEUE, BULK_QUEUE, SCHEDULED_QUEUE)

    async def read_depths() -> list[object]:
        async with state.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(f"dramatiq:{queue}")
            return list(await pipe.execute())

    # With Redis down the scrape still answers (the gauge keeps its last value; the fail-open counter shows why).
    depths = await state.redis_guard.run("queue_depth", read_depths, lambda: None)
    for queue, depth in zip(queues, depths or (), strict=False):
        metrics.queue_depth.labels(queue).set(int(depth))  # type: ignore[call-overload]
    return metrics.exposition()


async def serve_metrics(host: str, port: int, state: Any) -> asyncio.Server | None:
    """Start the metrics listener (GET /metrics; anything else 404); None when it cannot bind (logged — the
    webhooks themselves matter more than their metrics)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing in them matters here
            method, _, rest = request_line.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method == "GET" and path == "/metrics":
                status, media_type, body = "200 OK", "text/plain; version=0.0.4; charset=utf-8", await exposition(state)
            else:
                status, media_type, body = "404 Not Found", "text/plain", b"not found\n"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {media_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port, reuse_port=True)
    except OSError as exc:
        log.error("metrics listener not started", extra={"host": host, "port": port, "error": str(exc)})
        return None
