"""Bounded, skippable Redis calls on the request path: Redis never decides whether an inbound event is recorded.

Rate limits (before the inbox insert) and the chat typing indicator (after it) are worth a Redis round trip
but never a lost message.  Each call here is bounded by a short deadline (``asyncio.timeout``: a frozen
Redis keeps connections open and silent, so neither a refused connection nor the client's retries would
bound it), and a call that times out or errors returns the caller's fallback instead — the request goes on
without Redis (fail open) and ``medspa_webhook_redis_fail_open_total`` counts it.  The deadline is wall time,
so an overloaded event loop trips it too: callers' fallbacks must be safe, not just permissive.  After a failure the guard skips Redis
for a short cool-down, so during an outage requests do not each wait out the deadline; the first call after
the cool-down probes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from medspa import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class FailOpen:
    def __init__(self, timeout_s: float, *, cooldown_s: float = 1.0) -> None:
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._skip_until = 0.0

    @property
    def skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    async def run(self, operation: str, call: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        """``call()``'s result, or ``fallback()``'s when Redis is slow, failing, or recently was."""
        if self.skipping:
            metrics.redis_fail_open.labels(operation, "cooling_down").inc()
            return fallback()
        try:
            async with asyncio.timeout(self.timeout_s):  # no extra task per call (unlike wait_for on 3.11)
                return await call()
        except (TimeoutError, RedisError, OSError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            metrics.redis_fail_open.labels(operation, reason).inc()
            if not self.skipping:  # one line per cool-down, not one per request
                log.warning(
                    "redis call skipped (fail open); skipping redis for the cool-down",
                    extra={"operation": operation, "reason": reason, "cooldown_s": self.cooldown_s},
                )
            self._skip_until = time.monotonic() + self.cooldown_s
            return fallback()
