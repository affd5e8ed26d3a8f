"""Fixed-window rate limits in Redis, shared by every webhook replica — failing open.

Concurrent checks are coalesced (``webhooks.batching``): one pipelined round
trip per batch, one INCRBY per distinct key, so a burst costs Redis and the
event loop a fraction of a call per request.

A limit protects us from abuse; it must never cost a patient's message.  Every
check is bounded by the ``FailOpen`` guard's short deadline (the batch's round
trip too, so a hung Redis frees the batcher's slots): when Redis is slow,
failing or frozen — or this process is too busy to hear it in time — the check
falls back to an in-process counter with the same limits (per process rather
than shared, so at worst replicas x the limit), and the metric counts it.  The
request never waits on Redis, and a flood is still limited during an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from domain.safety import detect_emergency, possible_danger_sign
from webhooks.batching import MicroBatcher
from webhooks.redis_guard import FailOpen


def passes_every_limit(text: str) -> bool:
    """A patient's message that describes an emergency, an adverse reaction or a possible danger sign
    (``domain.safety``) is recorded even over a message limit: a limit guards against abuse, and a 429 loses an
    inbound SMS for good (Twilio does not retry a refused message webhook), so a patient texting fast because
    something is wrong would get neither the safety reply nor the on-call page.  Read only for a message a limit
    already refused, so the usual request pays nothing for it.  A flood of such texts still costs no model call
    (the safety screen answers them before any model) and is counted against the limit all the same."""
    return detect_emergency(text) is not None or possible_danger_sign(text)


class RateLimiter:
    def __init__(self, client: aioredis.Redis, guard: FailOpen, *, window_s: int = 60) -> None:
        self.client = client
        self.guard = guard
        self.window_s = window_s
        self._checks: MicroBatcher[tuple[str, int], bool] = MicroBatcher(self._check, max_batch=256)
        self._local_counts: dict[str, int] = {}  # the fallback's counts, this window only
        self._local_window = 0

    async def allow(self, key: str, limit: int) -> bool:
        """Count one request against ``key``; False once more than ``limit`` arrived in the current window.
        Counted in this process instead when Redis does not answer within the guard's deadline."""
        return await self.allow_all(((key, limit),))

    async def allow_all(self, checks: Sequence[tuple[str, int]]) -> bool:
        """Count one request against each ``(key, limit)``; False when any is over its limit."""

        async def every() -> bool:
            if len(checks) == 1:
                return await self._checks.submit(checks[0])
            return all(await asyncio.gather(*(self._checks.submit(check) for check in checks)))

        return await self.guard.run("rate_limit", every, lambda: self._local_allow(checks))

    def _local_allow(self, checks: Sequence[tuple[str, int]]) -> bool:
        window = int(time.time()) // self.window_s
        if window != self._local_window:  # a new window: yesterday's counts go (memory stays bounded)
            self._local_counts.clear()
            self._local_window = window
        allowed = True
        for key, limit in checks:
            count = self._local_counts.get(key, 0) + 1
            self._local_counts[key] = count
            allowed = allowed and count <= limit
        return allowed

    async def _check(self, checks: Sequence[tuple[str, int]]) -> list[bool]:
        window = int(time.time()) // self.window_s
        counts: dict[str, int] = {}
        for key, _ in checks:
            counts[key] = counts.get(key, 0) + 1

        async def round_trip() -> list[object]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, count in counts.items():
                    redis_key = f"rl:{key}:{window}"
                    pipe.incrby(redis_key, count)
                    pipe.expire(redis_key, self.window_s * 2)
                return list(await pipe.execute())

        # Bounded here too: the callers have already given up (fail open) by then, and the slot must come free.
        async with asyncio.timeout(self.guard.timeout_s):
            replies = await round_trip()
        # The n-th check of a key in this batch saw the count before the batch plus n.
        totals = {key: int(replies[2 * index]) for index, key in enumerate(counts)}  # type: ignore[call-overload]
        seen: dict[str, int] = {}
        allowed: list[bool] = []
        for key, limit in checks:
            seen[key] = seen.get(key, 0) + 1
            allowed.append(totals[key] - counts[key] + seen[key] <= limit)
        return allowed
