"""Messages-per-second limit per sending number, shared by all worker replicas.

A token bucket in Redis (one Lua call per send).  Conversation replies may take
the last tokens; bulk traffic (campaigns, automations) only takes a token while
the bucket keeps a reserve, so replies get through during a campaign.
"""

from __future__ import annotations

import time

import redis

_BUCKET = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000.0)
local wait = 0
if tokens >= 1 + reserve then
  tokens = tokens - 1
else
  wait = math.ceil((1 + reserve - tokens) * 1000.0 / rate)
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', key, math.ceil(burst * 1000.0 / rate) + 60000)
return wait
"""


class SmsRateLimiter:
    def __init__(self, client: redis.Redis, rate_per_s: float, *, burst: float | None = None) -> None:
        self.client = client
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._script = client.register_script(_BUCKET)

    def acquire(self, sender: str, *, bulk: bool = False, max_wait_ms: int = 2000) -> int:
        """Take one token for ``sender``; returns 0 when taken, else ms to wait before trying again.

        Short waits are slept here (replies flow at the configured pace); longer ones are returned so
        the caller re-enqueues with a delay instead of holding a worker thread.
        """
        if self.rate_per_s <= 0:
            return 0
        reserve = min(self.burst - 1, max(1.0, self.burst * 0.2)) if bulk else 0.0
        deadline = time.monotonic() + max_wait_ms / 1000
        while True:
            wait = int(
                self._script(
                    keys=[f"sms:bucket:{sender}"], args=[self.rate_per_s, self.burst, reserve, int(time.time() * 1000)]
                )
            )
            if wait == 0:
                return 0
            if time.monotonic() + wait / 1000 > deadline:
                return wait
            time.sleep(wait / 1000)
