"""What the webhook routes share: pools and clients built once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from twilio.request_validator import RequestValidator

from webhooks.chat_store import ChatStore
from webhooks.chat_streams import StreamHub, StreamSlots
from webhooks.enqueue import BackgroundEnqueuer
from webhooks.inbox import Inbox
from webhooks.outbox_status import OutboxStatus
from webhooks.ratelimit import RateLimiter
from webhooks.redis_guard import FailOpen

if TYPE_CHECKING:
    from webhooks.voice import VoiceClinics


@dataclass
class AppState:
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    inbox: Inbox
    chat_store: ChatStore
    outbox_status: OutboxStatus
    redis_guard: FailOpen
    rate_limiter: RateLimiter
    enqueuer: BackgroundEnqueuer
    stream_hub: StreamHub
    stream_slots: StreamSlots
    twilio_validator: RequestValidator
    stripe_webhook_secret: str
    chat_secret: str
    public_base_url: str
    max_body_bytes: int = 64 * 1024
    sender_limit_per_min: int = 20
    session_limit_per_min: int = 30
    session_ip_limit_per_min: int = 20
    session_clinic_limit_per_min: int = 600
    message_ip_limit_per_min: int = 60
    message_clinic_limit_per_min: int = 1200
    stream_ticket_ttl_s: int = 60
    chat_token_ttl_s: int = 24 * 3600
    dev_mode: bool = True
    voice_clinics: VoiceClinics | None = None  # the clinic facts a call needs (webhooks/voice.py)
