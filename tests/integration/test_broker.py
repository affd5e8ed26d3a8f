"""The broker's doorbell on real Redis: every immediate enqueue rings the queue's bell (a delayed one its delay queue's),
an idle consumer is woken by it, a delay queue's consumer comes back when a message it handed out falls due, and a
consumer whose process has no free thread leaves the bells to other replicas."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from medspa.broker import (
    DOORBELL_DEPTH,
    DOORBELL_FALLBACK_MS,
    LowLatencyRedisBroker,
    doorbell_key,
    enqueue_batch,
    message_for,
)
from medspa.services import Infrastructure


@pytest.fixture()
def broker(infra: Infrastructure) -> Iterator[LowLatencyRedisBroker]:
    # Built directly (not build_broker): the test must not replace the process-wide Dramatiq broker.
    instance = LowLatencyRedisBroker(url=infra.redis_url)
    yield instance
    instance.close()


@pytest.fixture()
def queue(broker: LowLatencyRedisBroker) -> Iterator[str]:
    name = "test-" + uuid.uuid4().hex[:8]
    broker.declare_queue(name)
    yield name
    broker.flush(name)
    broker.client.delete(doorbell_key(broker.namespace, name))


def _bells(client: redis.Redis, broker: LowLatencyRedisBroker, queue: str) -> int:
    return int(client.llen(doorbell_key(broker.namespace, queue)))


def test_an_immediate_enqueue_rings_its_queue_and_a_delayed_one_its_delay_queue(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    broker.enqueue(message_for("some_actor", queue, 1))
    assert _bells(redis_client, broker, queue) == 1
    broker.enqueue(message_for("some_actor", queue, 2), delay=60_000)
    assert _bells(redis_client, broker, queue) == 1
    assert _bells(redis_client, broker, queue + ".DQ") == 1  # the delay queue's consumer fetches it at once


def test_a_batch_rings_once_per_message_up_to_the_depth(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    enqueue_batch(broker, [message_for("some_actor", queue, n) for n in range(3)])
    assert _bells(redis_client, broker, queue) == 3
    enqueue_batch(broker, [message_for("some_actor", queue, n) for n in range(40)])
    assert _bells(redis_client, broker, queue) == DOORBELL_DEPTH


def _script_checks(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    # SCRIPT EXISTS calls ("cmdstat_script" on a Redis older than 7, which does not count subcommands apart).
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_script|exists", "cmdstat_script"))


def test_a_batch_of_one_is_one_round_trip_without_asking_whether_the_script_is_loaded(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    enqueue_batch(broker, [message_for("some_actor", queue, 0)])  # the script is loaded from here on
    checks = _script_checks(redis_client)
    enqueue_batch(broker, [message_for("some_actor", queue, 1)])
    enqueue_batch(broker, [message_for("some_actor", queue, n) for n in range(2, 5)])
    # redis-py's Script on a pipeline sends SCRIPT EXISTS before every pipeline: a second round trip per batch.
    assert _script_checks(redis_client) == checks
    assert redis_client.llen(f"{broker.namespace}:{queue}") == 5
    assert _bells(redis_client, broker, queue) == 5


def test_a_batch_after_redis_lost_its_scripts_loads_the_script_and_enqueues_every_message(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    redis_client.script_flush()  # what a Redis restart without persistence does to the script cache
    enqueue_batch(broker, [message_for("some_actor", queue, n) for n in range(3)])
    assert redis_client.llen(f"{broker.namespace}:{queue}") == 3
    assert _bells(redis_client, broker, queue) >= 3  # rung again after the retry: no wake-up lost
    consumer = broker.consume(queue, prefetch=8, timeout=100)
    received = [next(consumer) for _ in range(3)]
    assert sorted(m.args[0] for m in received if m is not None) == [0, 1, 2]
    for message in received:
        consumer.ack(message)
    consumer.close()


def test_an_idle_consumer_takes_a_message_after_the_bell(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer = broker.consume(queue, prefetch=2, timeout=100)
    assert next(consumer) is None  # nothing queued: waits at most the idle timeout, then returns
    broker.enqueue(message_for("some_actor", queue, "hello"))
    received = next(consumer) or next(consumer)  # woken by the bell, then fetched
    assert received is not None and received.args == ("hello",)
    consumer.ack(received)
    consumer.close()


def test_a_consumer_without_a_free_thread_leaves_the_bells(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer = broker.consume(queue, prefetch=1, timeout=100)
    broker.enqueue(message_for("some_actor", queue, 1))
    first = next(consumer) or next(consumer)
    assert first is not None
    redis_client.delete(doorbell_key(broker.namespace, queue))
    broker.enqueue(message_for("some_actor", queue, 2))
    assert next(consumer) is None  # prefetch full: the message and its bell stay for another replica
    assert _bells(redis_client, broker, queue) == 1
    consumer.ack(first)  # a slot frees up: the next call fetches at once
    second = next(consumer)
    assert second is not None and second.args == (2,)
    consumer.ack(second)
    consumer.close()


def test_an_idle_consumer_waits_on_its_bell_for_up_to_a_second_instead_of_polling(
    broker: LowLatencyRedisBroker, queue: str
) -> None:
    # What the worker asks for (its timeout, 1 s by default, or more) is capped at the fallback: the bell wakes it
    # at once for every message we enqueue, so the fallback only needs to catch what no one rang for.
    consumer = broker.consume(queue, prefetch=2, timeout=30_000)
    started = time.monotonic()
    assert next(consumer) is None  # nothing queued and no bell: one wait, not ten polls a second
    waited = time.monotonic() - started
    assert DOORBELL_FALLBACK_MS / 1000 - 0.05 <= waited < DOORBELL_FALLBACK_MS / 1000 + 5
    consumer.close()


def test_a_delay_queue_consumer_comes_back_when_its_message_falls_due(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    # The worker holds a delayed message in memory and moves it to its queue only when this consumer's loop
    # comes round: the consumer must return when the message falls due, not at its 1 s fallback.
    delayed = broker.consume(queue + ".DQ", prefetch=2, timeout=30_000)
    enqueued = broker.enqueue(message_for("some_actor", queue, "later"), delay=300)
    due_ms = int(enqueued.options["eta"])
    message = next(delayed) or next(delayed)  # rung: fetched at once, long before it is due
    assert message is not None and message.args == ("later",)
    assert current_millis() < due_ms
    for _ in range(DOORBELL_DEPTH + 2):  # a ring left over from the fetch may wake it early: harmless, it waits again
        assert next(delayed) is None
        if current_millis() >= due_ms:
            break
    returned_ms = current_millis()
    assert due_ms <= returned_ms < due_ms + DOORBELL_FALLBACK_MS - 100  # at its due time, not the fallback's
    delayed.ack(message)
    delayed.close()
    redis_client.delete(doorbell_key(broker.namespace, queue + ".DQ"))


# ------------------------------------------------------------------ acks in batches
def _unacked(client: redis.Redis, broker: LowLatencyRedisBroker, queue: str) -> set[str]:
    """The ids Redis still counts as taken by this broker's worker on ``queue`` (Dramatiq's ack set)."""
    return {m.decode() for m in client.smembers(f"{broker.namespace}:__acks__.{broker.broker_id}.{queue}")}


def _one_finished(broker: LowLatencyRedisBroker, queue: str, payload: str) -> tuple[Any, Any]:
    """A consumer that took one message and whose thread finished it (acked, the ack still waiting)."""
    consumer = broker.consume(queue, prefetch=1, timeout=100)
    broker.enqueue(message_for("some_actor", queue, payload))
    message = next(consumer) or next(consumer)
    assert message is not None
    consumer.ack(message)
    return consumer, message


def test_finished_messages_free_their_slots_at_once_and_are_acked_together_on_the_next_loop(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer = broker.consume(queue, prefetch=3, timeout=100)
    enqueue_batch(broker, [message_for("some_actor", queue, n) for n in range(3)])
    taken = [m for m in (next(consumer) for _ in range(6)) if m is not None][:3]
    assert len(taken) == 3
    ids = {m.options["redis_message_id"] for m in taken}
    for message in taken:
        consumer.ack(message)
    assert consumer.outstanding_message_count == 0  # the prefetch slots are free at once
    assert _unacked(redis_client, broker, queue) == ids  # Redis hears of the acks with the consumer's next loop
    assert next(consumer) is None
    assert _unacked(redis_client, broker, queue) == set()
    assert redis_client.hlen(f"{broker.namespace}:{queue}.msgs") == 0  # the payloads are gone too
    consumer.close()


def test_a_closing_consumer_acks_what_its_threads_finished(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer, _ = _one_finished(broker, queue, "last")
    consumer.close()  # the worker's shutdown: its threads stopped first, then the consumers close
    assert _unacked(redis_client, broker, queue) == set()


def test_acks_that_could_not_reach_redis_are_kept_for_the_next_flush(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer, message = _one_finished(broker, queue, "x")
    reachable = broker.client
    with socket.socket() as probe:  # a port nothing listens on: Redis unreachable for the flush
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker.client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        with pytest.raises(ConnectionClosed):  # as a failed fetch: Dramatiq restarts the consumer
            broker.flush_acks(queue)
    finally:
        broker.client.close()
        broker.client = reachable
    assert _unacked(redis_client, broker, queue) == {message.options["redis_message_id"]}
    broker.flush_acks(queue)  # Redis back: the kept ack goes with the next flush (a new consumer's, too)
    assert _unacked(redis_client, broker, queue) == set()
    consumer.close()


def test_acks_after_redis_lost_its_scripts_load_the_script_and_ack(
    broker: LowLatencyRedisBroker, queue: str, redis_client: redis.Redis
) -> None:
    consumer, _ = _one_finished(broker, queue, "y")
    redis_client.script_flush()
    broker.flush_acks(queue)
    assert _unacked(redis_client, broker, queue) == set()
    consumer.close()
