"""Enqueue after the inbox commit, off the event loop — best effort, never in the response's way.

A Dramatiq ``send`` is a blocking Redis round trip (~250 µs); doing it on the
event loop pushed p99 past 500 ms under load.  Handlers hand the message to a
background thread and answer at once: the inbox row is already durable.

When Redis is down or hung (the broker's client has a socket timeout, so a call
fails instead of hanging) the thread retries the batch with backoff for
``retry_for_s`` — so messages recorded during a short outage are processed as
soon as Redis is back — and then leaves it to the sweeper, which re-enqueues
anything recorded but unprocessed.  A message enqueued twice (a timed-out call
that had in fact succeeded, or the sweeper's copy) is harmless: the actors are
idempotent on the inbox row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import dramatiq

from medspa import metrics
from medspa.broker import enqueue_batch

log = logging.getLogger(__name__)


class BackgroundEnqueuer:
    def __init__(
        self, broker: dramatiq.Broker, *, capacity: int = 100_000, retry_for_s: float = 60.0, max_backoff_s: float = 2.0
    ) -> None:
        self.broker = broker
        self.retry_for_s = retry_for_s
        self.max_backoff_s = max_backoff_s
        self._queue: queue.Queue[dramatiq.Message | None] = queue.Queue(maxsize=capacity)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="enqueuer", daemon=True)
        self._thread.start()

    def submit(self, message: dramatiq.Message) -> None:
        """Never blocks and never raises: the caller has already recorded the event."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            # Dropping the *enqueue* loses nothing: the inbox row is durable and the sweeper picks it up.
            metrics.redis_fail_open.labels("enqueue", "backlog_full").inc()
            log.warning("enqueue backlog full; leaving message to the sweeper", extra={"actor": message.actor_name})

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            # Drain what accumulated meanwhile: one pipelined round trip for the lot.
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            messages = [m for m in batch if m is not None]
            if messages:
                self._enqueue(messages)
            if stop:
                return

    def _enqueue(self, messages: list[dramatiq.Message]) -> None:
        deadline = time.monotonic() + self.retry_for_s
        backoff = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                enqueue_batch(self.broker, messages)
                return
            except Exception as exc:  # noqa: BLE001 - any broker failure: retry, then leave it to the sweeper
                metrics.redis_fail_open.labels("enqueue", type(exc).__name__).inc()
                if self._closing.is_set() or time.monotonic() >= deadline:
                    log.warning(
                        "enqueue failed; the sweeper will re-enqueue",
                        extra={"messages": len(messages), "error": type(exc).__name__},
                    )
                    return
                if attempt == 1:
                    log.warning(
                        "enqueue failed; retrying", extra={"messages": len(messages), "error": type(exc).__name__}
                    )
                self._closing.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
