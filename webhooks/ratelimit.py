"""Fixed-window rate limits in Redis, shared by every webhook replica.

Concurrent checks are coalesced (``webhooks.batching``): one pipelined round
trip per batch, one INCRBY per distinct key, so a burst costs Redis and the
event loop a fraction of a call per request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from webhooks.batching import MicroBatcher


class RateLimiter:
    def __init__(self, client: aioredis.Redis, *, window_s: int = 60) -> None:
        self.client = client
        self.window_s = window_s
        self._checks: MicroBatcher[tuple[str, int], bool] = MicroBatcher(self._check, max_batch=256)

    async def allow(self, key: str, limit: int) -> bool:
        """Count one request against ``key``; False once more than ``limit`` arrived in the current window."""
        return await self._checks.submit((key, limit))

    async def _check(self, checks: Sequence[tuple[str, int]]) -> list[bool]:
        window = int(time.time()) // self.window_s
        counts: dict[str, int] = {}
        for key, _ in checks:
            counts[key] = counts.get(key, 0) + 1
        async with self.client.pipeline(transaction=False) as pipe:
            for key, count in counts.items():
                redis_key = f"rl:{key}:{window}"
                pipe.incrby(redis_key, count)
                pipe.expire(redis_key, self.window_s * 2)
            replies = await pipe.execute()
        # The n-th check of a key in this batch saw the count before the batch plus n.
        totals = {key: int(replies[2 * index]) for index, key in enumerate(counts)}
        seen: dict[str, int] = {}
        allowed: list[bool] = []
        for key, limit in checks:
            seen[key] = seen.get(key, 0) + 1
            allowed.append(totals[key] - counts[key] + seen[key] <= limit)
        return allowed
