"""Dramatiq actors: thin and idempotent.  Each takes ids, calls the pipeline,
and enqueues follow-ups only after its transaction committed.

Run: ``dramatiq worker.actors --processes 2 --threads 8`` (``medspa worker``).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from medspa.broker import (
    BULK_QUEUE,
    INBOUND_QUEUE,
    OUTBOX_QUEUE,
    SCHEDULED_QUEUE,
    TURNS_QUEUE,
    build_broker,
    enqueue_batch,
    message_for,
)
from medspa.logs import configure_logging
from medspa.secrets import startup_settings
from medspa.settings import get_settings
from worker.container import Container, build_container, integration_modes
from worker.metrics_setup import configure_worker_metrics
from worker.outbox.rows import ClaimedSend
from worker.sms_rate import SmsRateLimiter

log = logging.getLogger(__name__)

# A production worker with a missing, empty, placeholder or weak secret exits here (one line, non-zero), while
# Dramatiq imports this module: before any consumer starts.
_settings = startup_settings("worker")
_metrics_enabled = configure_worker_metrics(_settings)  # before anything imports prometheus_client
configure_logging(_settings.log_level, json_output=_settings.log_json)
broker = build_broker(str(_settings.redis_url or "redis://127.0.0.1:6379/0"))

_container: Container | None = None
_limiter: SmsRateLimiter | None = None
_lock = threading.RLock()


def install_container(container: Container) -> None:
    """Tests (and the benchmark) install a container built with fakes before starting a worker."""
    global _container, _limiter
    with _lock:
        _container = container
        _limiter = SmsRateLimiter(container.redis, container.settings.sms_rate_per_number_per_s)


def container(threads: int | None = None) -> Container:
    # Built once per process under a lock: racing threads must not each build an engine and pool.
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                install_container(build_container(get_settings(), threads=threads))
                log.info("worker ready", extra={"integrations": integration_modes(get_settings()), "threads": threads})
    assert _container is not None
    return _container


def limiter() -> SmsRateLimiter:
    container()
    assert _limiter is not None
    return _limiter


class BuildContainerAtBoot(Middleware):
    """Build the composition root when a worker boots, before its threads start, with the thread count the
    worker really runs (``--threads``), which sizes the database pool."""

    def __init__(self) -> None:
        self._worker_process = False

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self._worker_process = True  # a `dramatiq` worker process (not a Worker started inside another program)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        container(threads=int(worker.worker_threads))
        if not self._worker_process:
            return
        # Everything loaded so far (modules, SDK clients, discovery documents, the engine) lives as long as the
        # process: move it out of the collector's generations, so a full collection under load scans only what
        # turns allocate.  Full collections over it stalled every thread of the process (turn-latency tail).
        gc.collect()
        gc.freeze()


class PrefetchNoMoreThanThreads(Middleware):
    """A process takes a message off a queue only when it has a thread to run it.

    Dramatiq prefetches twice the thread count by default.  A turn holds its thread for the whole model call
    (seconds with a real model), so the surplus sat in a busy process's local cache while other replicas'
    threads were idle: measured, the median wait between the webhook and the turn's start was 136 ms (p99 2 s)
    at 64 turns in flight.  ``dramatiq_queue_prefetch`` in the environment still wins when set."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not os.environ.get("dramatiq_queue_prefetch"):  # noqa: SIM112 - Dramatiq's own (lower-case) name
            worker.queue_prefetch = max(1, int(worker.worker_threads))


broker.add_middleware(BuildContainerAtBoot())
broker.add_middleware(PrefetchNoMoreThanThreads())
if _metrics_enabled:
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())


def _send_outbox(clinic_id: int, outbox_ids: list[int], claimed: Sequence[ClaimedSend] = (), /) -> None:
    """Send just-committed conversation replies right here, in order, instead of another queue hop (a hop
    costs a poll interval of latency and an actor dispatch).  ``claimed`` rows were claimed by the commit that
    produced them; the others go through the claim step.  Either way each row is sent at most once; anything
    that must wait or be retried goes to the ``send_outbox`` actor."""
    from worker.outbox.ports import send_ports
    from worker.outbox.sender import RetryLater, send_claimed, send_one

    later: list[dramatiq.Message] = []
    work: list[ClaimedSend | int] = [*claimed, *outbox_ids]
    for index, item in enumerate(work):
        outbox_id = item if isinstance(item, int) else item.id
        try:
            if isinstance(item, int):
                outcome = send_one(send_ports(container(), limiter()), clinic_id, item)
            else:
                outcome = send_claimed(send_ports(container(), limiter()), clinic_id, item)
        except RetryLater:
            later.append(message_for("send_outbox", OUTBOX_QUEUE, clinic_id, outbox_id))
            continue
        except Exception:
            # A claimed row left in 'sending' is reconciled by the sweeper (never blindly re-sent).
            log.exception(
                "inline send failed; handing the rest to the send actor",
                extra={"clinic_id": clinic_id, "outbox_id": outbox_id},
            )
            later += [
                message_for("send_outbox", OUTBOX_QUEUE, clinic_id, w if isinstance(w, int) else w.id)
                for w in work[index:]
            ]
            break
        if outcome.status == "deferred":
            send_outbox.send_with_options(args=(clinic_id, outbox_id), delay=max(50, outcome.delay_ms or 100))
    if later:
        enqueue_batch(broker, later)


@dramatiq.actor(queue_name=INBOUND_QUEUE, max_retries=3, min_backoff=1000, max_backoff=30_000, time_limit=300_000)
def handle_inbound_event(clinic_id: int, inbox_id: int) -> None:
    # On SIGTERM Dramatiq stops fetching and lets running turns finish (docker-compose's stop_grace_period
    # covers a turn); a turn cut short anyway is resumed by another worker when its lease expires.
    from worker.turns import handle_inbound

    handle_inbound(container(), clinic_id, inbox_id, _send_outbox)


@dramatiq.actor(queue_name=TURNS_QUEUE, max_retries=3, min_backoff=1000, max_backoff=30_000, time_limit=300_000)
def run_conversation(clinic_id: int, conversation_id: int) -> None:
    from worker.turns import run_conversation as run

    run(container(), clinic_id, conversation_id, _send_outbox)


def _send(clinic_id: int, outbox_id: int, queue: str) -> None:
    from worker.outbox.ports import send_ports
    from worker.outbox.sender import RetryLater, send_one

    try:
        outcome = send_one(send_ports(container(), limiter()), clinic_id, outbox_id)
    except RetryLater:
        raise  # Dramatiq retries with backoff; the row is 'unknown' and will be reconciled first
    if outcome.status == "deferred" and outcome.delay_ms is not None:
        actor = send_outbox_bulk if queue == BULK_QUEUE else send_outbox
        actor.send_with_options(args=(clinic_id, outbox_id), delay=max(50, outcome.delay_ms))


# Sends: retried explicitly (at most once per row is guaranteed by the claim, not by retry counts).
@dramatiq.actor(queue_name=OUTBOX_QUEUE, max_retries=6, min_backoff=500, max_backoff=30_000, time_limit=60_000)
def send_outbox(clinic_id: int, outbox_id: int) -> None:
    _send(clinic_id, outbox_id, OUTBOX_QUEUE)


@dramatiq.actor(queue_name=BULK_QUEUE, max_retries=6, min_backoff=1000, max_backoff=60_000, time_limit=60_000)
def send_outbox_bulk(clinic_id: int, outbox_id: int) -> None:
    _send(clinic_id, outbox_id, BULK_QUEUE)


@dramatiq.actor(queue_name=OUTBOX_QUEUE, max_retries=3)
def handle_delivery_error(clinic_id: int, outbox_id: int, error_code: str) -> None:
    from worker.outbox.store import PostgresOutbox

    PostgresOutbox(container().database).apply_delivery_error(clinic_id, outbox_id, error_code)


@dramatiq.actor(queue_name=INBOUND_QUEUE, max_retries=5, min_backoff=1000, max_backoff=60_000)
def handle_payment_event(clinic_id: int, inbox_id: int) -> None:
    from worker.payments_flow import apply_payment_event

    apply_payment_event(container(), clinic_id, inbox_id, _send_outbox)


def _sweep_enqueue(kind: str, clinic_id: int, item_id: int) -> None:
    actors: dict[str, dramatiq.Actor[Any, Any]] = {
        "inbound": handle_inbound_event,
        "payment": handle_payment_event,
        "conversation": run_conversation,
        "outbox": send_outbox,
        "outbox_bulk": send_outbox_bulk,
    }
    actors[kind].send(clinic_id, item_id)


@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def sweep() -> None:
    from worker.sweeper import SweepDeadlines
    from worker.sweeper import sweep as run_sweep

    run_sweep(container().database, _sweep_enqueue, SweepDeadlines.of(container().settings))


# Actor groups kept in their own modules; imported here so `dramatiq worker.actors` registers them.
from worker import automation_actors, payment_actors  # noqa: E402,F401
