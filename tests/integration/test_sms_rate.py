"""The per-number SMS token bucket on real Redis: shared limit, replies before bulk traffic."""

from __future__ import annotations

import uuid

from worker.sms_rate import SmsRateLimiter


def test_bucket_allows_the_burst_then_asks_to_wait(redis_client):
    limiter = SmsRateLimiter(redis_client, 5.0, burst=5.0)
    sender = "+1415" + uuid.uuid4().hex[:7]
    assert [limiter.acquire(sender, max_wait_ms=0) for _ in range(5)] == [0] * 5
    wait = limiter.acquire(sender, max_wait_ms=0)
    assert 0 < wait <= 250  # one token comes back every 200 ms at 5/s


def test_two_limiters_share_one_bucket(redis_client):
    sender = "+1415" + uuid.uuid4().hex[:7]
    first, second = SmsRateLimiter(redis_client, 2.0, burst=2.0), SmsRateLimiter(redis_client, 2.0, burst=2.0)
    assert first.acquire(sender, max_wait_ms=0) == 0
    assert second.acquire(sender, max_wait_ms=0) == 0
    assert first.acquire(sender, max_wait_ms=0) > 0 and second.acquire(sender, max_wait_ms=0) > 0


def test_bulk_traffic_leaves_a_reserve_for_replies(redis_client):
    limiter = SmsRateLimiter(redis_client, 10.0, burst=10.0)
    sender = "+1415" + uuid.uuid4().hex[:7]
    bulk_sent = 0
    while limiter.acquire(sender, bulk=True, max_wait_ms=0) == 0:
        bulk_sent += 1
    assert 0 < bulk_sent < 10  # bulk stopped with tokens left over
    assert limiter.acquire(sender, max_wait_ms=0) == 0  # a conversation reply still goes out


def test_zero_rate_means_unlimited(redis_client):
    limiter = SmsRateLimiter(redis_client, 0)
    assert all(limiter.acquire("+14155550000", max_wait_ms=0) == 0 for _ in range(100))
