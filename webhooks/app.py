"""The ASGI app: routes, startup and shutdown.  No domain logic, no LLM imports.

Run with ``uvicorn --factory webhooks.app:create_app`` (``medspa dev up`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from medspa.broker import build_broker
from medspa.heap import settle_after_start_up
from medspa.logs import configure_logging
from medspa.redis_pools import async_client
from medspa.secrets import load_webhook_secrets, startup_settings
from medspa.settings import Settings
from webhooks import chat, dev_payments, stripe_events, twilio, voice
from webhooks.chat_store import ChatStore
from webhooks.chat_streams import StreamHub, StreamSlots
from webhooks.enqueue import BackgroundEnqueuer
from webhooks.inbox import Inbox
from webhooks.metrics import RequestMetrics, serve_metrics
from webhooks.outbox_status import OutboxStatus
from webhooks.ratelimit import RateLimiter
from webhooks.redis_guard import FailOpen
from webhooks.state import AppState

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# Redis connections per webhook process (the event loop's client; the enqueue thread and the chat streams have theirs).
WEBHOOK_REDIS_CONNECTIONS = 64


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.medspa
    checks: dict[str, str] = {}
    try:
        await state.inbox.ping()
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure
        checks["postgres"] = type(exc).__name__
    try:
        await asyncio.wait_for(state.redis.ping(), 1.0)
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = type(exc).__name__
    # Ready = able to record inbound events, which needs Postgres only.  Redis being down is reported, not a
    # reason to leave the load balancer's rotation: the app still records every text (rate limits fail open,
    # enqueueing is retried and swept), and a webhook turned away at the proxy is a text Twilio never resends.
    ready = checks["postgres"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _static(name: str, media_type: str) -> Route:
    async def serve(_: Request) -> Response:
        path = STATIC / name
        if not path.exists():
            return JSONResponse({"error": f"{name} is not available"}, status_code=404)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return Route(f"/{name}", serve, methods=["GET"])


def create_app(settings: Settings | None = None) -> Starlette:
    # Checked before anything is opened: a production process with a missing, empty, placeholder or weak secret
    # exits here with one line, before uvicorn binds its socket.
    settings = startup_settings("webhooks", settings)
    configure_logging(settings.log_level, json_output=settings.log_json)
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set for the webhook app (medspa dev up sets them)")
    secrets = load_webhook_secrets(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            _libpq_url(str(settings.database_url)),
            min_size=2,
            max_size=16,
            open=False,
            kwargs={"application_name": "medspa-webhooks", "autocommit": True},
        )
        await pool.open(wait=True, timeout=30)
        # Every Redis call this process makes is bounded: a hung Redis (no RST) must fail a call, not hold a
        # request.  No client-side retries (their backoff would stretch the bound); callers decide what to do.
        # Bounded and blocking (``medspa.redis_pools``): a burst waits for one of the connections (at most the
        # socket timeout) rather than failing with MaxConnectionsError; rate-limit checks are batched, so few are used.
        redis_client = async_client(
            str(settings.redis_url),
            max_connections=WEBHOOK_REDIS_CONNECTIONS,
            timeout_s=1.0,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=AsyncRetry(NoBackoff(), 0),
            client_name="medspa-webhooks",
        )
        redis_guard = FailOpen(settings.redis_fail_open_timeout_ms / 1000)
        broker = build_broker(str(settings.redis_url), socket_timeout=2.0)
        enqueuer = BackgroundEnqueuer(broker)
        stream_hub = StreamHub(str(settings.redis_url))
        stream_hub.start()
        app.state.medspa = state = AppState(
            pool=pool,
            redis=redis_client,
            inbox=Inbox(pool),
            chat_store=ChatStore(pool),
            outbox_status=OutboxStatus(pool),
            redis_guard=redis_guard,
            rate_limiter=RateLimiter(redis_client, redis_guard),
            enqueuer=enqueuer,
            stream_hub=stream_hub,
            stream_slots=StreamSlots(
                per_ip=settings.chat_streams_per_ip, per_process=settings.chat_streams_per_process
            ),
            twilio_validator=RequestValidator(secrets.twilio_auth_token),
            stripe_webhook_secret=secrets.stripe_webhook_secret,
            chat_secret=secrets.chat_token_secret,
            public_base_url=settings.public_base_url,
            sender_limit_per_min=settings.rate_limit_per_sender_per_min,
            session_limit_per_min=settings.rate_limit_per_session_per_min,
            session_ip_limit_per_min=settings.rate_limit_chat_sessions_per_ip_per_min,
            session_clinic_limit_per_min=settings.rate_limit_chat_sessions_per_clinic_per_min,
            message_ip_limit_per_min=settings.rate_limit_chat_messages_per_ip_per_min,
            message_clinic_limit_per_min=settings.rate_limit_chat_messages_per_clinic_per_min,
            stream_ticket_ttl_s=settings.chat_stream_ticket_ttl_s,
            chat_token_ttl_s=settings.chat_token_ttl_s,
            dev_mode=not settings.production,
            voice_clinics=voice.VoiceClinics(pool),
        )
        metrics_server = None
        if settings.webhook_metrics_port:
            metrics_server = await serve_metrics(settings.webhook_metrics_host, settings.webhook_metrics_port, state)
        # Start-up objects live as long as the process: out of the collector's generations, so a full collection
        # under load scans only what requests allocate (shorter pauses, a shorter tail); fewer young collections.
        settle_after_start_up()
        log.info("webhooks ready", extra={"twilio_dev_secret": secrets.twilio_is_dev})
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.close()
            await stream_hub.close()
            enqueuer.close()
            broker.close()
            await redis_client.aclose()
            await pool.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/webhooks/twilio/sms", twilio.inbound_sms, methods=["POST"]),
        Route("/webhooks/twilio/status", twilio.status_callback, methods=["POST"]),
        Route("/webhooks/twilio/voice", voice.inbound_call, methods=["POST"]),
        Route(voice.DIAL_STATUS_PATH, voice.dial_status, methods=["POST"]),
        Route("/webhooks/stripe", stripe_events.stripe_webhook, methods=["POST"]),
        Route("/webhooks/chat/session", chat.create_session, methods=["POST"]),
        Route("/webhooks/chat/messages", chat.post_message, methods=["POST"]),
        Route("/webhooks/chat/handover", chat.handover_to_sms, methods=["POST"]),
        Route("/webhooks/chat/stream-ticket", chat.stream_ticket, methods=["POST"]),
        Route("/webhooks/chat/stream", chat.stream, methods=["GET"]),
        Route("/webhooks/chat/{path:path}", chat.preflight, methods=["OPTIONS"]),
        _static("widget.js", "application/javascript"),
        _static("widget.css", "text/css"),
    ]
    if not settings.production:  # development and test only: never a demo page or a fake checkout in production
        routes.append(Route("/", _demo_page, methods=["GET"]))
        routes.append(Route("/demo", _demo_page, methods=["GET"]))
        # Local test-mode deposits (no Stripe keys): confirms through the same payment-event path.
        routes.extend(dev_payments.routes())
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(RequestMetrics)])


async def _demo_page(_: Request) -> Response:
    path = STATIC / "demo.html"
    if not path.exists():
        return JSONResponse({"error": "demo page not available"}, status_code=404)
    return FileResponse(path, media_type="text/html")
