"""Chat reply streams: every SSE stream of a webhook process shares one Redis connection.

Replies reach a browser through a Redis stream per conversation (``chat:stream:{id}``, written by the
worker's outbox and the typing indicator).  Reading it with one blocking ``XREAD`` per open stream cost one
Redis connection per browser tab: a flood of streams could exhaust Redis's and this process's connections,
and SMS ingress shares them.  Here one reader task per process (``StreamHub``) blocks in a single ``XREAD``
over every stream key its subscribers watch, on its own connection (a pool of exactly one), and fans the
entries out in-process.  Opening a stream costs no Redis connection; the number of streams is capped per
client IP and per process (``StreamSlots``), so a flood gets 429s, not resources.

Each subscriber keeps its own cursor; the hub reads each key from the lowest cursor among its subscribers and
hands every subscriber only entries past its own, so a reconnecting browser resumes from ``Last-Event-ID``
without replaying to the others.  A subscriber too slow to drain its queue is dropped (its browser reconnects
and resumes).  A new key joins the hub's next read (the read blocks at most ``block_ms``; nothing is missed,
the cursor says where to start).  When Redis fails, the hub backs off and retries; streams stay open on
keep-alives meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from medspa import metrics

log = logging.getLogger(__name__)

StreamEntry = tuple[str, dict[bytes, bytes]]


def parse_stream_id(value: str) -> tuple[int, int] | None:
    """A Redis stream entry id ``ms-seq`` as a comparable pair; None when ``value`` is not one."""
    parts = value.split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _stream_id(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"


@dataclass(eq=False)
class Subscription:
    key: str
    cursor: tuple[int, int]
    queue: asyncio.Queue[StreamEntry] = field(default_factory=lambda: asyncio.Queue(maxsize=100))
    dropped: bool = False  # too slow: the stream ends and the browser resumes from its Last-Event-ID

    def offer(self, entries: list[StreamEntry]) -> None:
        for entry_id, fields in entries:
            position = parse_stream_id(entry_id)
            if position is None or position <= self.cursor or self.dropped:
                continue
            try:
                self.queue.put_nowait((entry_id, fields))
            except asyncio.QueueFull:
                self.dropped = True
                return
            self.cursor = position


class StreamHub:
    def __init__(self, redis_url: str, *, block_ms: int = 500, batch: int = 100) -> None:
        self.block_ms = block_ms
        self.batch = batch
        # Exactly one connection, used by the reader task alone; the socket timeout outlasts the blocking read.
        self.pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=1,
            timeout=None,
            socket_timeout=block_ms / 1000 + 5,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            client_name="medspa-webhooks-streams",
        )
        self.client = aioredis.Redis(connection_pool=self.pool)
        self._subscribers: dict[str, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-stream-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()
        await self.pool.disconnect()

    @property
    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def subscribe(self, key: str, after: tuple[int, int]) -> Subscription:
        """Entries of stream ``key`` with ids after ``after`` will arrive in the subscription's queue."""
        subscription = Subscription(key, after)
        self._subscribers.setdefault(key, set()).add(subscription)
        self._wake.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.key]

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            cursors = {key: _stream_id(min(s.cursor for s in subs)) for key, subs in self._subscribers.items()}
            try:
                reply: Any = await self.client.xread(cursors, block=self.block_ms, count=self.batch)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the reader must outlive any failure: streams depend on it
                metrics.redis_fail_open.labels("chat_stream", type(exc).__name__).inc()
                if backoff == 0.1:
                    log.warning("chat stream reads failing; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            for raw_key, raw_entries in reply or ():
                key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                entries = [(i.decode() if isinstance(i, bytes) else str(i), fields) for i, fields in raw_entries]
                for subscription in list(self._subscribers.get(key, ())):
                    subscription.offer(entries)


class StreamSlots:
    """Caps on concurrent streams, per client IP and per process (in memory: each webhook process enforces its
    own; behind N replicas an IP can hold at most N x ``per_ip``)."""

    def __init__(self, *, per_ip: int, per_process: int) -> None:
        self.per_ip = per_ip
        self.per_process = per_process
        self._by_ip: dict[str, int] = {}
        self._total = 0

    def acquire(self, ip: str) -> bool:
        if self._total >= self.per_process or self._by_ip.get(ip, 0) >= self.per_ip:
            return False
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        self._total += 1
        metrics.chat_streams_open.set(self._total)
        return True

    def release(self, ip: str) -> None:
        count = self._by_ip.get(ip, 0) - 1
        if count > 0:
            self._by_ip[ip] = count
        else:
            self._by_ip.pop(ip, None)
        self._total = max(0, self._total - 1)
        metrics.chat_streams_open.set(self._total)
