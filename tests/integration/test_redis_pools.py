"""Redis pools sized from concurrency, on real Redis: more concurrent users than connections wait for one (never
``MaxConnectionsError``), a grown pool really opens more connections, and a worker grows its broker's pool from
the threads it runs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from redis.exceptions import MaxConnectionsError

from medspa.broker import DEFAULT_CONNECTIONS, LowLatencyRedisBroker
from medspa.redis_pools import async_client, sync_client, worker_connections
from medspa.services import Infrastructure

USERS = 24
SLOTS = 3
HOLD_S = 0.05  # each user holds its connection this long (a BLPOP on an empty key that times out)


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            target(index)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def _connected(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_the_default_pool_fails_where_ours_waits(infra: Infrastructure, redis_client: redis.Redis) -> None:
    key = "pools-" + uuid.uuid4().hex
    default = redis.Redis(connection_pool=redis.ConnectionPool.from_url(infra.redis_url, max_connections=SLOTS))
    errors = _run_threads(USERS, lambda i: default.blpop([f"{key}:{i}"], timeout=HOLD_S))
    assert any(isinstance(e, MaxConnectionsError) for e in errors)  # what redis-py's default pool does
    default.connection_pool.disconnect()

    name = "pools-" + uuid.uuid4().hex[:8]
    ours = sync_client(infra.redis_url, max_connections=SLOTS, client_name=name)
    answered: list[int] = []

    def use(index: int) -> None:
        ours.blpop([f"{key}:{index}"], timeout=HOLD_S)
        answered.append(index)

    assert _run_threads(USERS, use) == []
    assert sorted(answered) == list(range(USERS))  # every user got a connection, in turn
    assert 0 < _connected(redis_client, name) <= SLOTS  # and never more than the bound were opened
    ours.close()  # the client owns its pool: closing it closes the connections
    _wait_for(lambda: _connected(redis_client, name) == 0)


def test_a_grown_pool_opens_more_connections_at_once(infra: Infrastructure, redis_client: redis.Redis) -> None:
    name = "pools-" + uuid.uuid4().hex[:8]
    key = "pools-" + uuid.uuid4().hex
    client = sync_client(infra.redis_url, max_connections=2, client_name=name)
    assert client.ping()  # one idle connection before growing: it must stay usable
    client.connection_pool.grow_to(8)  # type: ignore[attr-defined]
    threads = [threading.Thread(target=lambda i=i: client.blpop([f"{key}:{i}"], timeout=10)) for i in range(8)]
    for thread in threads:
        thread.start()
    # All eight block in Redis at the same time: eight connections, where the pool started with two.
    _wait_for(lambda: sum(1 for c in redis_client.client_list() if c.get("name") == name and c["cmd"] == "blpop") == 8)
    for i in range(8):
        redis_client.rpush(f"{key}:{i}", "go")
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    client.close()


def test_the_async_pool_waits_too(infra: Infrastructure, redis_client: redis.Redis) -> None:
    name = "pools-" + uuid.uuid4().hex[:8]
    key = "pools-" + uuid.uuid4().hex

    async def run() -> int:
        client = async_client(infra.redis_url, max_connections=SLOTS, client_name=name)
        try:
            results = await asyncio.gather(
                *(client.blpop([f"{key}:{i}"], timeout=HOLD_S) for i in range(USERS)), return_exceptions=True
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
            return len(results)
        finally:
            await client.aclose()

    assert asyncio.run(run()) == USERS


def test_a_worker_grows_its_broker_pool_from_its_threads(infra: Infrastructure) -> None:
    from worker import runtime

    # Built directly (not build_broker): the test must not replace the process-wide Dramatiq broker.
    broker = LowLatencyRedisBroker(client=sync_client(infra.redis_url, max_connections=DEFAULT_CONNECTIONS))
    try:
        broker.declare_queue("pools-test")
        pool = broker.client.connection_pool
        runtime.grow_broker_pool(broker, 40)
        assert runtime.consumer_count(broker) == 2  # the queue and its delay queue
        assert pool.max_connections == worker_connections(40, 2) > DEFAULT_CONNECTIONS
    finally:
        broker.close()


@pytest.mark.parametrize("threads", [1, 300])
def test_worker_connections_cover_every_thread_and_consumer(threads: int) -> None:
    assert worker_connections(threads, 10) >= threads + 10
