"""Enqueue after the inbox commit, off the event loop.

A Dramatiq ``send`` is a blocking Redis round trip (~250 µs); doing it on the
event loop pushed p99 past 500 ms under load.  Handlers hand the message to a
background thread and answer at once: the inbox row is already durable, and the
sweeper re-enqueues anything this thread never got to (e.g. Redis was down).
"""

from __future__ import annotations

import logging
import queue
import threading

import dramatiq

from medspa.broker import enqueue_batch

log = logging.getLogger(__name__)


class BackgroundEnqueuer:
    def __init__(self, broker: dramatiq.Broker, *, capacity: int = 100_000) -> None:
        self.broker = broker
        self._queue: queue.Queue[dramatiq.Message | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="enqueuer", daemon=True)
        self._thread.start()

    def submit(self, message: dramatiq.Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            # Dropping the *enqueue* loses nothing: the inbox row is durable and the sweeper picks it up.
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
                try:
                    enqueue_batch(self.broker, messages)
                except Exception:
                    log.exception("enqueue failed; the sweeper will re-enqueue", extra={"messages": len(messages)})
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
