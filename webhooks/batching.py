"""Coalescing concurrent requests' I/O into batches (group commit).

Under load the webhook app spends most of its CPU on per-call client overhead
(pool checkout, one round trip, one commit each) rather than on the work
itself.  A ``MicroBatcher`` lets every request await its own result while the
items submitted in the same event-loop iteration — and everything that
queues up while the previous batches are in flight — travel together: one
round trip, one transaction.  At low load a batch is a single item and waits
for nothing (one loop iteration).  Nothing is acknowledged before its batch
has completed, so durability is unchanged.

A flush answers per item: a result, or ``ItemFailed(error)`` for an item that
failed on its own — so one bad item fails only its caller (``webhooks.inbox``
retries a failed multi-row insert row by row to find it).  A flush that raises
fails its whole batch (a lost connection: every caller answers 5xx, and
retrying is safe).  Items whose callers have gone away (a client disconnect, a
caller's deadline) are dropped before their batch leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class ItemFailed:
    """A flush's answer for one item that failed by itself: its caller gets ``error`` raised."""

    error: Exception


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result | ItemFailed]]],
        *,
        max_batch: int = 128,
        max_in_flight: int = 2,
    ) -> None:
        """``flush`` takes a batch and returns one result (or ``ItemFailed``) per item, in order, or raises for
        the whole batch.
        At most ``max_in_flight`` batches run at once; what arrives meanwhile waits for the next one."""
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._kick_scheduled = False
        self._running: set[asyncio.Future[None]] = set()  # strong references: the loop keeps only weak ones

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if not self._kick_scheduled and self._in_flight < self._max_in_flight:
            # Let the rest of this loop iteration's requests join before the batch leaves.
            self._kick_scheduled = True
            loop.call_soon(self._kick)
        return await future

    def _kick(self) -> None:
        self._kick_scheduled = False
        # Callers that stopped waiting (cancelled: a disconnect, a deadline) need no work done for them.
        self._waiting = [entry for entry in self._waiting if not entry[1].done()]
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._in_flight += 1
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch flush returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # the whole batch fails together (each caller answers 5xx; retries are safe)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # a caller that went away (client disconnect) no longer waits
                    continue
                if isinstance(result, ItemFailed):
                    future.set_exception(result.error)
                else:
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._waiting:
                self._kick()
