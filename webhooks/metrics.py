"""Request metrics (a thin ASGI middleware) and the ``/metrics`` endpoint."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medspa import metrics
from medspa.broker import BULK_QUEUE, INBOUND_QUEUE, OUTBOX_QUEUE, SCHEDULED_QUEUE, TURNS_QUEUE

_KNOWN_ROUTES = (
    "/webhooks/twilio/sms",
    "/webhooks/twilio/status",
    "/webhooks/stripe",
    "/webhooks/chat/session",
    "/webhooks/chat/messages",
    "/webhooks/chat/stream",
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


async def metrics_endpoint(request: Request) -> Response:
    state: Any = request.app.state.medspa
    queues = (INBOUND_QUEUE, TURNS_QUEUE, OUTBOX_QUEUE, BULK_QUEUE, SCHEDULED_QUEUE)

    async def read_depths() -> list[object]:
        async with state.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(f"dramatiq:{queue}")
            return list(await pipe.execute())

    # With Redis down the scrape still answers (the gauge keeps its last value; the fail-open counter shows why).
    depths = await state.redis_guard.run("queue_depth", read_depths, None)
    for queue, depth in zip(queues, depths or (), strict=False):
        metrics.queue_depth.labels(queue).set(int(depth))  # type: ignore[call-overload]
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
