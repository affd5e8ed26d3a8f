"""What the console hands work to once a request's transaction committed: the Dramatiq broker (enqueue by actor
name, as the webhook app and the CLI do — the console never imports an actor) and the live inbox's Redis stream
(``worker/live_inbox.py``).  Built lazily, once per process; without ``REDIS_URL`` nothing is enqueued and the
sweepers pick the committed work up (queued outbox rows, unanswered conversations)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import dramatiq
import redis

from medspa.broker import build_broker, enqueue_batch
from worker.live_inbox import publish

log = logging.getLogger(__name__)


class ConsoleOutside:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._broker: dramatiq.Broker | None = None
        self._redis: redis.Redis | None = None

    def _the_broker(self) -> dramatiq.Broker | None:
        if self.redis_url is None:
            return None
        with self._lock:
            if self._broker is None:
                self._broker = build_broker(self.redis_url, socket_timeout=5.0)
            return self._broker

    def redis(self) -> redis.Redis | None:
        if self.redis_url is None:
            return None
        with self._lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    self.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, client_name="medspa-console"
                )
            return self._redis

    def enqueue(self, messages: Sequence[dramatiq.Message]) -> None:
        """Enqueue after a commit; raises when Redis is unreachable (the caller's after-commit hook logs it and the
        backstops pick the committed work up)."""
        broker = self._the_broker()
        if broker is None:
            log.warning("console follow-up not enqueued: no REDIS_URL", extra={"messages": len(messages)})
            return
        if messages:
            enqueue_batch(broker, messages)

    def publish(self, clinic_id: int, event: dict[str, Any]) -> None:
        client = self.redis()
        if client is not None:
            publish(client, clinic_id, event)

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.close()
            if self._redis is not None:
                self._redis.close()
            self._broker = self._redis = None
