"""The composition root: builds the real graph (engine, broker, adapters, brain)
from settings, once per worker process.  Tests build the same ``Container``
with fakes at the outside boundary (the OpenAI/Twilio/Stripe/Google fakes, a
controllable clock).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from db.clinics import load_clinic
from db.engine import Database, make_engine
from domain.clinic import Clinic
from domain.conversation import AppointmentView, Brain, ToolExecutor
from domain.ports import Calendar, ChatModel, Clock, Embedder, MediaFetcher, MediaStore, Payments, SmsSender
from medspa.redis_pools import sync_client, worker_connections
from medspa.settings import Settings

if TYPE_CHECKING:
    from worker.leases import LeaseKeeper
    from worker.outbox.sent_marks import SentMarkRecorder

log = logging.getLogger(__name__)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    database: Database
    redis: redis.Redis
    clock: Clock
    sms: SmsSender
    payments: Payments
    calendar: Calendar
    model: ChatModel
    brain: Brain
    embedder: Embedder | None
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _clinics: dict[int, tuple[float, Clinic, dict[str, Any]]] = field(default_factory=dict)
    _clinic_lock: threading.Lock = field(default_factory=threading.Lock)
    _lease_keeper: LeaseKeeper | None = None
    _sent_marks: SentMarkRecorder | None = None
    _keeper_lock: threading.Lock = field(default_factory=threading.Lock)
    _media: tuple[MediaFetcher | None, MediaStore] | None = None

    def lease_keeper(self) -> LeaseKeeper:
        """This process's conversation-lease heartbeat (``worker/leases.py``), started on first use."""
        if self._lease_keeper is None:
            with self._keeper_lock:
                if self._lease_keeper is None:
                    from worker.leases import LeaseKeeper

                    self._lease_keeper = LeaseKeeper(self.database, self.settings.lease_seconds)
        return self._lease_keeper

    def sent_marks(self) -> SentMarkRecorder:
        """This process's recorder of "sent" marks written in batches (``worker/outbox/sent_marks.py``)."""
        if self._sent_marks is None:
            with self._keeper_lock:
                if self._sent_marks is None:
                    from worker.outbox.sent_marks import SentMarkRecorder

                    self._sent_marks = SentMarkRecorder(self.database)
        return self._sent_marks

    def flush_sent_marks(self) -> None:
        """Write the "sent" marks still waiting for their batch (the worker's shutdown, before the pool closes)."""
        if self._sent_marks is not None:
            self._sent_marks.close()

    def media(self) -> tuple[MediaFetcher | None, MediaStore]:
        """The media fetcher (None without Twilio credentials) and the media store, built on first use."""
        if self._media is None:
            with self._keeper_lock:
                if self._media is None:
                    from worker.integrations.media_storage import build_media_store

                    fetcher: MediaFetcher | None = None
                    if self.settings.twilio_enabled:
                        from worker.integrations.twilio_media import TwilioMediaFetcher

                        fetcher = TwilioMediaFetcher(
                            str(self.settings.twilio_account_sid),
                            self.settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
                            base_url_override=self.settings.twilio_api_base,
                            timeout=self.settings.media_fetch_timeout_s,
                        )
                    self._media = (fetcher, build_media_store(self.settings))
        return self._media

    def tool_executor(
        self,
        *,
        clinic_id: int,
        client_id: int,
        conversation_id: int,
        fence_version: int,
        upcoming: Sequence[AppointmentView] | None = None,
    ) -> ToolExecutor:
        from worker.tools import DbToolExecutor

        return DbToolExecutor(
            self.database,
            clinic_id=clinic_id,
            client_id=client_id,
            conversation_id=conversation_id,
            fence_version=fence_version,
            now=self.clock.now(),
            payments=self.payments,
            calendar=self.calendar,
            embedder=self.embedder,
            public_base_url=self.settings.public_base_url,
            hold_minutes=self.settings.deposit_hold_minutes,
            clinic=self.clinic(clinic_id)[0],
            upcoming=upcoming,
        )

    def clinic(self, clinic_id: int) -> tuple[Clinic, dict[str, Any]]:
        """The clinic (``db.clinics.load_clinic``) plus its routing facts (sms number, on-call phone); cached for a minute per process."""
        cached = self._clinics.get(clinic_id)
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1], cached[2]
        with self.database.tenant_scope(clinic_id) as session:
            profile = load_clinic(session, clinic_id)
        if profile is None:
            raise LookupError(f"no clinic {clinic_id}")
        routing = profile.routing.as_dict()
        with self._clinic_lock:
            self._clinics[clinic_id] = (time.monotonic(), profile, routing)
        return profile, routing

    def close(self) -> None:
        self.flush_sent_marks()
        if self._lease_keeper is not None:
            self._lease_keeper.close()
        self.database.dispose()
        self.redis.close()


# Connections per worker process at most for its threads, whatever their count (plus ``DB_POOL_HEADROOM``).
DB_POOL_CAP = 32
# For the Dramatiq-side threads (consumers, the sweeper's helpers) on top of one per worker thread.
DB_POOL_HEADROOM = 4


def pool_size_for(settings: Settings, threads: int | None = None) -> int:
    """Connections kept per worker process: one per worker thread (``threads``, else ``WORKER_THREADS``).

    A turn holds a connection only between model calls, but a pool smaller than the thread count stalls
    under load: measured at 64 turns in flight, 40 threads on a pool of 6 (+8 overflow) queued ~30 ms per
    checkout, and every overflow connection was opened and closed again (a fork and a password exchange in
    Postgres each time).  QueuePool opens connections lazily, so an idle worker holds few.
    Capped at ``DB_POOL_CAP``: with hundreds of threads per process (a slow model, hundreds of turns in flight)
    most of them wait on the model holding no connection, and a pool as large as the thread count would let a
    burst open more connections than Postgres allows (``max_connections``; 2 x 264 threads at 512 in flight);
    beyond the cap a checkout waits (``pool_timeout``).  Plus ``DB_POOL_HEADROOM``.  ``DB_POOL_SIZE`` overrides
    it (the whole pool)."""
    if settings.db_pool_size:
        return settings.db_pool_size
    return max(2, min(DB_POOL_CAP, threads or settings.worker_threads)) + DB_POOL_HEADROOM


def build_model(settings: Settings, embedder: Embedder | None = None, *, threads: int | None = None) -> ChatModel:
    """The chat model for this process; the offline policy gets its understanding (local sentence embeddings
    over labelled examples, see ``worker/understanding.py``) from ``embedder`` when that is the local model.
    ``threads``: the threads calling it (sizes the OpenAI clients, ``worker/integrations/http_pools.py``)."""
    provider = settings.model_provider
    if provider == "auto":
        provider = "openai" if settings.openai_enabled else "offline"
    if provider == "openai":
        if settings.openai_api_key is None:
            raise RuntimeError("MODEL_PROVIDER=openai needs OPENAI_API_KEY")
        from worker.integrations.openai_model import OpenAIChatModel

        return OpenAIChatModel(
            settings.openai_api_key.get_secret_value(),
            settings.openai_base_url,
            settings.openai_model,
            deadline_s=settings.model_deadline_s,
            backoff_initial_s=settings.model_retry_backoff_s,
            threads=threads,
        )
    if provider == "bench":
        from worker.integrations.bench_model import BenchModel

        return BenchModel(latency_ms=settings.bench_model_latency_ms)
    from domain.offline_policy import OfflinePolicy
    from worker.understanding import build_intent_classifier, local_nlu_embedder

    nlu_embedder = local_nlu_embedder(
        embedder, allow_local=settings.local_embeddings and settings.embeddings_provider != "none"
    )
    return OfflinePolicy(nlu=build_intent_classifier(nlu_embedder, warm=True))


def build_calendar(settings: Settings) -> Calendar:
    """The providers' calendars: Google when configured, else the database is the only calendar."""
    if settings.google_enabled:
        from worker.integrations.google_calendar import GoogleCalendar, build_calendar_service

        return GoogleCalendar(
            build_calendar_service(str(settings.google_application_credentials), settings.google_calendar_api_base)
        )
    from worker.integrations import console

    return console.DatabaseOnlyCalendar()


def build_container(settings: Settings, *, clock: Clock | None = None, threads: int | None = None) -> Container:
    """``threads``: the worker threads of this process (default ``WORKER_THREADS``): sizes the database pool, the
    Redis pool and the providers' keep-alive pools (model, embeddings, SMS)."""
    from domain.agent_loop import AgentBrain
    from medspa.secrets import check_startup
    from worker.integrations import console
    from worker.integrations.embedders import embedder_for
    from worker.integrations.http_pools import keepalive_connections

    check_startup(settings)  # production: Twilio credentials present, so the console sender is never chosen
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set for workers (medspa dev up sets them)")
    engine = make_engine(
        settings.database_url,
        pool_size=pool_size_for(settings, threads),
        # No overflow: QueuePool closes an overflow connection as soon as it comes back, so under load every
        # checkout past the pool forked a Postgres backend that then warmed its caches and parsed its statements
        # afresh (measured at 256 turns in flight: ~19 new sessions a second).  The headroom is pool slots,
        # opened lazily and kept.
        max_overflow=0,
        application_name="medspa-worker",
    )
    database = Database(engine)
    # Bounded and blocking (never MaxConnectionsError): one connection per worker thread (the SMS sink, the chat
    # publisher, the rate limiter, leases), plus the scheduler-side helpers' headroom.
    process_threads = threads or settings.worker_threads
    redis_client = sync_client(settings.redis_url, max_connections=worker_connections(process_threads))
    sms: SmsSender
    if settings.sms_provider == "sink":
        from worker.integrations.bench_model import SinkSmsSender

        sms = SinkSmsSender(redis_client if settings.sms_sink_announce else None)
    elif settings.twilio_enabled and settings.sms_provider in ("auto", "twilio"):
        from worker.integrations.twilio_sms import TwilioSmsSender

        sms = TwilioSmsSender(
            str(settings.twilio_account_sid),
            settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
            base_url_override=settings.twilio_api_base,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            timeout=settings.sms_send_timeout_s,
            connections=keepalive_connections(process_threads),  # each thread sends its replies: a connection each
        )
    else:
        sms = console.ConsoleSmsSender()
    payments: Payments
    if settings.stripe_enabled:
        from worker.integrations.stripe_payments import StripePayments

        payments = StripePayments(
            settings.stripe_api_key.get_secret_value(),  # type: ignore[union-attr]
            api_base=settings.stripe_api_base,
        )
    else:
        payments = console.LocalTestPayments(settings.public_base_url)
    calendar = build_calendar(settings)
    # Each thread calls the model (and may search): OpenAI clients sized for them (worker/integrations/http_pools.py).
    embedder = embedder_for(settings, threads=process_threads)
    model = build_model(settings, embedder, threads=process_threads)
    brain = AgentBrain(model, max_steps=settings.max_tool_steps, history_window=settings.history_window)
    return Container(
        settings=settings,
        database=database,
        redis=redis_client,
        clock=clock or SystemClock(),
        sms=sms,
        payments=payments,
        calendar=calendar,
        model=model,
        brain=brain,
        embedder=embedder,
    )


def integration_modes(settings: Settings) -> dict[str, str]:
    """Which mode each integration runs in (for the startup line; never prints secret values).

    Mirrors the choices ``build_container`` makes, and says when a half-configured integration will not work
    end to end (e.g. Stripe payments whose webhook secret is unset: the webhook app then verifies with a
    generated development secret, so Stripe's events would be rejected and no deposit would confirm).
    """
    sms = "console"
    if settings.twilio_enabled:
        sms = "twilio" + (" (messaging service)" if settings.twilio_messaging_service_sid else "")
    elif settings.twilio_account_sid or settings.twilio_auth_token:
        sms = "console (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN both needed for twilio)"
    payments = "local-test (deposit links served at /dev/pay/...)"
    if settings.production:
        payments = "local-test (no /dev/pay page in production: deposits cannot be paid; set STRIPE_API_KEY)"
    if settings.stripe_enabled:
        payments = (
            "stripe"
            if settings.stripe_webhook_secret is not None
            else ("stripe (STRIPE_WEBHOOK_SECRET unset: Stripe's webhook events will be rejected)")
        )
    calendar = "google" if settings.google_enabled else "database-only"
    provider = settings.model_provider
    if provider == "auto":
        provider = "openai" if settings.openai_enabled else "offline"
    return {
        "sms": sms,
        "payments": payments,
        "calendar": calendar,
        "model": "offline-rules" if provider == "offline" else provider,
    }
