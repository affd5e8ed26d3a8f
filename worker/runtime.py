"""The worker runtime: how a worker process boots, and what it holds while it runs.

- **Boot** (:func:`boot_worker_process`), only when a worker process starts (``dramatiq worker.actors``, which
  ``medspa worker`` runs): the production start-up check, multiprocess metrics (before anything imports
  prometheus_client), logging, then the broker with our middleware and every actor declared on it.  Importing
  this module (or any other) does none of that.
- **Actors** are defined with :func:`actor` in the modules listed in :data:`ACTOR_MODULES` and declared on the
  broker at boot.  Dramatiq's own decorator binds an actor to the global broker when its module is imported,
  creating a default one if none is set; deferring the declaration keeps imports free of side effects.
  Retries are explicit on every actor.
- **The composition root** per process (:func:`container`, :func:`limiter`), built once when the worker boots.

Actor modules are leaves: they import this module and ``worker.sending``, never each other; everything else
enqueues them by name (``worker.sending.enqueue``), as the webhook app does.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, ParamSpec

import dramatiq
from dramatiq.middleware import Middleware

from medspa.broker import build_broker
from medspa.heap import settle_after_start_up
from medspa.logs import configure_logging
from medspa.redis_pools import grow_client, worker_connections
from medspa.secrets import startup_settings
from medspa.settings import get_settings
from worker.container import Container, build_container, integration_modes
from worker.metrics_setup import configure_worker_metrics
from worker.sms_rate import SmsRateLimiter

log = logging.getLogger(__name__)

P = ParamSpec("P")

# The modules that define actors (imported when a broker is started, by name: they import this module).
ACTOR_MODULES: tuple[str, ...] = (
    "worker.pipeline_actors",
    "worker.payment_actors",
    "worker.automation_actors",
    "worker.visit_actors",
    "worker.frontdesk_actors",
    "worker.notification_actors",
    "worker.knowledge_actors",
    "worker.waitlist_actors",
)

_container: Container | None = None
_limiter: SmsRateLimiter | None = None
_broker: dramatiq.Broker | None = None
_lock = threading.RLock()


# ---------------------------------------------------------------------------------------------------- actors
@dataclass(frozen=True)
class ActorDefinition(Generic[P]):
    """An actor as its module defines it: the function, its queue and its Dramatiq options (declared on a
    broker by :func:`start_broker`).  Calling it runs the function here and now."""

    fn: Callable[P, None]
    queue_name: str
    options: Mapping[str, Any]

    @property
    def actor_name(self) -> str:
        return self.fn.__name__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        self.fn(*args, **kwargs)


def actor(
    *,
    queue_name: str,
    max_retries: int,
    min_backoff: int | None = None,
    max_backoff: int | None = None,
    time_limit: int | None = None,
) -> Callable[[Callable[P, None]], ActorDefinition[P]]:
    """Define an actor.  Retries are always explicit: ``max_retries`` is required, and an actor that retries
    names its backoff (milliseconds) — Dramatiq's defaults would retry 20 times over up to a week."""
    if max_retries > 0 and (min_backoff is None or max_backoff is None):
        raise TypeError("an actor that retries names its min_backoff and max_backoff")
    options = {"max_retries": max_retries}
    optional = {"min_backoff": min_backoff, "max_backoff": max_backoff, "time_limit": time_limit}
    options |= {name: value for name, value in optional.items() if value is not None}

    def define(fn: Callable[P, None]) -> ActorDefinition[P]:
        return ActorDefinition(fn, queue_name, options)

    return define


def actor_definitions(module: ModuleType) -> list[ActorDefinition[Any]]:
    """The actors ``module`` defines (not any it merely refers to)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, ActorDefinition) and value.fn.__module__ == module.__name__
    ]


def declare_actors(broker: dramatiq.Broker, module_names: tuple[str, ...] = ACTOR_MODULES) -> None:
    for module_name in module_names:
        for definition in actor_definitions(importlib.import_module(module_name)):
            dramatiq.actor(broker=broker, queue_name=definition.queue_name, **definition.options)(definition.fn)


# ---------------------------------------------------------------------------------------------------- broker
class BuildContainerAtBoot(Middleware):
    """Build the composition root when a worker boots, before its threads start, with the thread count the
    worker really runs (``--threads``), which sizes the database pool."""

    def __init__(self) -> None:
        self._worker_process = False

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self._worker_process = True  # a `dramatiq` worker process (not a Worker started inside another program)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        threads = int(worker.worker_threads)
        grow_broker_pool(broker, threads)
        container(threads=threads)
        if not self._worker_process:
            return
        # Everything loaded so far (modules, SDK clients, discovery documents, the engine) lives as long as the
        # process; full collections over it stalled every thread of the process (turn-latency tail), and young
        # collections every 700 allocations cost ~4 % of the worker's CPU at 256 turns in flight.
        settle_after_start_up()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Every worker thread has stopped: nothing adds a mark any more.  The marks still waiting for their batch
        # are written now (a mark lost with the process costs the sweeper a provider lookup, not a second text).
        if _container is not None:
            _container.flush_sent_marks()


def consumer_count(broker: dramatiq.Broker) -> int:
    """Dramatiq consumer threads a worker on ``broker`` may run: one per queue and one per delay queue."""
    return len(broker.get_declared_queues()) + len(broker.get_declared_delay_queues())


def grow_broker_pool(broker: dramatiq.Broker, threads: int) -> None:
    """Size the broker's Redis pool for a worker of ``threads`` threads: every thread may enqueue or ack while
    every consumer holds a fetch, so none waits for a connection (and none fails: the pool blocks)."""
    client = getattr(broker, "client", None)
    if client is not None:
        grow_client(client, worker_connections(threads, consumer_count(broker)))


class PrefetchNoMoreThanThreads(Middleware):
    """A process takes a message off a queue only when it has a thread to run it.

    Dramatiq prefetches twice the thread count by default.  A turn holds its thread for the whole model call
    (seconds with a real model), so the surplus sat in a busy process's local cache while other replicas'
    threads were idle: measured, the median wait between the webhook and the turn's start was 136 ms (p99 2 s)
    at 64 turns in flight.  ``dramatiq_queue_prefetch`` in the environment still wins when set."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not os.environ.get("dramatiq_queue_prefetch"):  # noqa: SIM112 - Dramatiq's own (lower-case) name
            worker.queue_prefetch = max(1, int(worker.worker_threads))


def start_broker(redis_url: str, *, prometheus: bool = False) -> dramatiq.Broker:
    """The worker's broker (also Dramatiq's global one): our middleware, then every actor declared on it.
    Worker boot calls it; tests and tools that run a ``dramatiq.Worker`` inside their own process call it too."""
    global _broker
    broker = build_broker(redis_url)
    broker.add_middleware(BuildContainerAtBoot())
    broker.add_middleware(PrefetchNoMoreThanThreads())
    if prometheus:
        from dramatiq.middleware.prometheus import Prometheus  # imports prometheus_client: after its set-up

        broker.add_middleware(Prometheus())
    declare_actors(broker)
    with _lock:
        _broker = broker
    return broker


def broker() -> dramatiq.Broker:
    """The broker this process started (never Dramatiq's implicit default, which would point elsewhere)."""
    if _broker is None:
        raise RuntimeError("no worker broker: the worker runtime was not started in this process")
    return _broker


def boot_worker_process() -> dramatiq.Broker:
    """Everything a worker process does before it consumes, in order.  A production worker with a missing,
    empty, placeholder or weak secret exits at the first step (one line, non-zero): before any consumer starts."""
    settings = startup_settings("worker")
    metrics = configure_worker_metrics(settings)  # before anything imports prometheus_client
    configure_logging(settings.log_level, json_output=settings.log_json)
    return start_broker(str(settings.redis_url or "redis://127.0.0.1:6379/0"), prometheus=metrics)


# ---------------------------------------------------------------------------------------------------- container
def install_container(built: Container) -> None:
    """Tests (and the benchmark) install a container built with fakes before starting a worker."""
    global _container, _limiter
    with _lock:
        _container = built
        _limiter = SmsRateLimiter(built.redis, built.settings.sms_rate_per_number_per_s)


def container(threads: int | None = None) -> Container:
    # Built once per process under a lock: racing threads must not each build an engine and pool.
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
