"""Fixed-window rate limits in Redis, shared by every webhook replica."""

from __future__ import annotations

import time

import redis.asyncio as aioredis


class RateLimiter:
    def __init__(self, client: aioredis.Redis, *, window_s: int = 60) -> None:
        self.client = client
        self.window_s = window_s

    async def allow(self, key: str, limit: int) -> bool:
        window = int(time.time()) // self.window_s
        redis_key = f"rl:{key}:{window}"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(redis_key)
            pipe.expire(redis_key, self.window_s * 2)
            count, _ = await pipe.execute()
        return int(count) <= limit
