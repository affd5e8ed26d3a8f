"""Rate limits on a real Redis: enforced while Redis answers; when it hangs, never waited on (fail open, fast)
and counted in-process instead, so a flood is still limited."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from medspa import metrics
from tests.support.infra import private_redis
from webhooks.ratelimit import RateLimiter
from webhooks.redis_guard import FailOpen


def _fail_open_count() -> float:
    return sum(
        sample.value
        for family in metrics.redis_fail_open.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("operation") == "rate_limit"
    )


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


def test_limits_are_counted_per_key_across_concurrent_checks(infra):
    async def main() -> tuple[list[bool], bool, bool]:
        client = _client(infra.redis_url)
        limiter = RateLimiter(client, FailOpen(0.5))
        key = f"test:{uuid.uuid4().hex}"
        try:
            burst = await asyncio.gather(*(limiter.allow(key, 3) for _ in range(5)))
            other = await limiter.allow(f"{key}:other", 3)
            both = await limiter.allow_all([(f"{key}:fresh", 10), (key, 3)])  # one of the two is over its limit
            return list(burst), other, both
        finally:
            await client.aclose()

    burst, other, both = asyncio.run(main())
    assert burst == [True, True, True, False, False]
    assert other is True and both is False


def test_a_frozen_redis_is_skipped_within_the_deadline_and_limits_are_counted_in_process():
    with private_redis() as server:

        async def main() -> tuple[list[bool], float, list[bool], float]:
            client = _client(server.url)
            limiter = RateLimiter(client, FailOpen(0.075, cooldown_s=30))
            try:
                assert await limiter.allow("warm", 100)  # the connection exists before the freeze
                with server.frozen():
                    started = time.monotonic()
                    first = await asyncio.gather(*(limiter.allow(f"k{n}", 1) for n in range(20)))
                    first_s = time.monotonic() - started
                    started = time.monotonic()
                    cooling = [await limiter.allow("k0", 1) for _ in range(20)]  # counted in-process meanwhile
                    cooling_s = time.monotonic() - started
                return list(first), first_s, cooling, cooling_s
            finally:
                await client.aclose()

        before = _fail_open_count()
        first, first_s, cooling, cooling_s = asyncio.run(main())
    assert all(first) and first_s < 0.5, first_s  # within the deadline, not the client's 1 s socket timeout
    # During the cool-down Redis is not even tried, and the limit still holds (k0's one request is spent).
    assert cooling == [False] * 20 and cooling_s < 0.05, cooling_s
    assert _fail_open_count() - before == 40
