"""Redis connection pools sized from concurrency: bounded, blocking, never ``MaxConnectionsError``.

redis-py's default pool opens up to 100 connections and raises ``MaxConnectionsError("Too many connections")``
for the 101st concurrent user: at 256 turns in flight (2 worker processes x 136 threads) the inline send path
failed that way.  Every Redis client our processes build comes from here instead: a pool with a fixed number of
connections that makes a caller *wait* (up to ``ACQUIRE_TIMEOUT_S``) for a free one, sized from the process's
real concurrency — one connection per thread that may call Redis, one per Dramatiq consumer (each holds its
connection through a blocking fetch), plus a little headroom.  A thread holds a connection only for one command
or pipeline, so a pool that size never makes anyone wait in practice; the bound is what Redis ``maxclients`` is
sized from (README, Capacity).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

# How long a caller waits for a free connection before ``redis.ConnectionError("No connection available.")``:
# long enough to ride out a burst, short enough that a wedged pool shows up as an error a retry handles.
ACQUIRE_TIMEOUT_S = 5.0
# Connections on top of the counted users: heartbeats, maintenance, a metrics scrape.
HEADROOM = 4


def worker_connections(threads: int, consumers: int = 0) -> int:
    """Connections for a process with ``threads`` threads that may call Redis and ``consumers`` Dramatiq
    consumer threads (one per consumed queue and delay queue)."""
    return max(1, threads) + max(0, consumers) + HEADROOM


class GrowableBlockingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, which can be enlarged after it was built: the worker's broker is created when
    the process boots, before Dramatiq says how many threads it will run (``before_worker_boot``)."""

    def grow_to(self, max_connections: int) -> None:
        queue = self.pool
        with queue.mutex:
            extra = max_connections - self.max_connections
            if extra <= 0:
                return
            # The LIFO queue hands out its last items first: idle connections stay on top, the new slots (None =
            # "open one when needed") go underneath, so growing opens nothing until the idle ones are in use.
            held = list(queue.queue)
            queue.queue.clear()  # type: ignore[attr-defined]
            queue.queue.extend([None] * extra + held)  # type: ignore[attr-defined]
            queue.maxsize = max_connections
            self.max_connections = max_connections
            queue.not_empty.notify(extra)


def sync_client(
    url: str, *, max_connections: int, timeout_s: float | None = ACQUIRE_TIMEOUT_S, **kwargs: Any
) -> redis.Redis:
    """A client on a bounded blocking pool of ``max_connections``; ``kwargs`` are connection options
    (``socket_timeout``, ``retry``, ``client_name``...)."""
    pool = GrowableBlockingPool.from_url(url, max_connections=max_connections, timeout=timeout_s, **kwargs)
    return redis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections


def async_client(
    url: str, *, max_connections: int, timeout_s: float | None = ACQUIRE_TIMEOUT_S, **kwargs: Any
) -> aioredis.Redis:
    """The asyncio counterpart of :func:`sync_client` (the webhook app)."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout_s, **kwargs)
    return aioredis.Redis.from_pool(pool)


def grow_client(client: redis.Redis, max_connections: int) -> None:
    """Enlarge ``client``'s pool when it is one of ours (a no-op for any other pool)."""
    pool = client.connection_pool
    if isinstance(pool, GrowableBlockingPool):
        pool.grow_to(max_connections)
