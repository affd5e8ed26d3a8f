"""The Dramatiq broker (Redis), shared by the webhook app and the workers.

The webhook app enqueues by actor *name* (``enqueue``) so it never imports the
worker's code, the LLM client or the integrations.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from medspa.ids import fast_uuid
from medspa.redis_pools import sync_client

# The broker pool of a process that does not say how many threads use it (the scheduler, commands, the webhook's
# enqueue thread): connections open lazily, so the bound costs nothing until it is needed.
DEFAULT_CONNECTIONS = 16

# Queue names: replies jump ahead of automations and campaigns.
INBOUND_QUEUE = "inbound"
TURNS_QUEUE = "turns"
OUTBOX_QUEUE = "outbox"
BULK_QUEUE = "bulk"
SCHEDULED_QUEUE = "scheduled"

# Recovery after a SIGKILLed worker: Dramatiq requeues a dead worker's unacked
# messages once its heartbeat is older than this, during queue maintenance.
HEARTBEAT_TIMEOUT_MS = 20_000
# Maintenance runs on this many commands per million; at our fetch rates this
# runs it every few seconds per worker instead of every few minutes.
MAINTENANCE_CHANCE = 20_000


# Dramatiq's idle consumer polls Redis with a backoff that grows to the worker timeout (1 s by default): a new
# message then waits up to a second per hop (webhook → turn → send), and a delayed one (a paced send, 50–100 ms)
# falls due only at the next poll.  Ours wait on doorbells instead (below): every enqueue of ours rings the
# queue's bell — a delayed one its delay queue's — so an idle consumer wakes at once, a delay queue's consumer
# also when a message it holds falls due, and the wait's timeout only catches messages no one rang for
# (Dramatiq's maintenance returning a dead worker's messages to the queue, seconds after the heartbeat deadline
# anyway).  Polling at 100 ms instead was most of an idle worker's cost: 2 idle processes (8 threads each) made
# 224 fetch scripts and 91 BLPOPs a second, ~10 % of a core, Redis 2.5 %.
DOORBELL_FALLBACK_MS = 1000
# How many wake-ups may wait in a queue's doorbell (one per enqueued message, trimmed).
DOORBELL_DEPTH = 8


def doorbell_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.bell"


class _DoorbellConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, except that an idle consumer waits on its queue's doorbell (``BLPOP`` with
    the same backoff as its timeout) instead of sleeping, so a message enqueued by us is fetched at once.

    Measured at 64 turns in flight: the webhook-to-turn queueing delay fell from a median of 22 ms (p90 66 ms,
    the backoff sleep) to a few milliseconds.  A consumer whose process has no free thread (prefetch full)
    waits for one to free up instead, leaving the wake-ups to replicas that can take the work."""

    def __init__(self, broker: LowLatencyRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # The parent never sleeps (timeout 0): its misses return at once and the wait happens here.
        super().__init__(broker, queue_name, prefetch, 0)
        self._idle_ms = timeout
        self._bell = doorbell_key(broker.namespace, queue_name)
        self._slot_freed = threading.Event()  # set by ack/nack: a prefetch slot is free again

    def ack(self, message: Any) -> None:
        # Not a round trip of the worker thread's own: Redis hears of it with the others finished meanwhile, when this
        # consumer's thread next comes round (``LowLatencyRedisBroker.flush_acks``).  The prefetch slot frees now.
        try:
            self.broker.defer_ack(self.queue_name, message.options["redis_message_id"])
        finally:
            self.queued_message_ids.discard(message.message_id)
            self._slot_freed.set()

    def close(self) -> None:
        try:
            self.broker.flush_acks(self.queue_name)  # the worker's shutdown: its threads have finished
        finally:
            super().close()

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)
        finally:
            self._slot_freed.set()

    def __next__(self) -> Any:
        self.broker.flush_acks(self.queue_name)
        full = not self.message_cache and self.outstanding_message_count >= self.prefetch
        message = super().__next__()  # fetches unless full; never sleeps
        if message is not None:
            return message
        wait_s = self._wait_s()
        if wait_s <= 0:
            return None
        if full:
            # Every thread of this process is busy: leave new work to other replicas until one of ours is free
            # (ack/nack set the event), then fetch at once — not Dramatiq's growing sleep (up to the idle cap),
            # which left freed threads idle while a backlog waited.
            self._slot_freed.clear()
            if self.outstanding_message_count >= self.prefetch:
                self._slot_freed.wait(wait_s)
            return None
        # The queue was empty: wait for the bell (a message enqueued since the fetch left one there, so no
        # wake-up is lost); the timeout is the fallback for producers that do not ring (Dramatiq's maintenance
        # requeue, tools writing to Redis themselves; a delayed message that falls due is enqueued through this
        # broker and rings).  No growing backoff: the bell covers it.
        self.broker.client.blpop([self._bell], timeout=wait_s)
        return None

    def _wait_s(self) -> float:
        """How long an idle call may wait before it returns to the worker's loop."""
        return self._idle_ms / 1000


class _DelayQueueConsumer(_DoorbellConsumer):
    """A delay queue's consumer: waits on its bell like the others (a delayed enqueue of ours rings it), but never
    past the earliest due time among the delayed messages it handed to the worker.  The worker keeps those in
    memory and moves one to its queue only when this consumer's loop comes round, so the loop must come round
    when one falls due: a paced send (50–100 ms) is then moved on time instead of at the next poll."""

    def __init__(self, broker: LowLatencyRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._due: list[int] = []  # due times (epoch ms) of the messages handed out, a heap

    def __next__(self) -> Any:
        message = super().__next__()
        if message is not None:
            heapq.heappush(self._due, int(message.options.get("eta") or current_millis()))
        return message

    def _wait_s(self) -> float:
        now = current_millis()
        if self._due and self._due[0] <= now:
            while self._due and self._due[0] <= now:  # the loop this call returns to moves them
                heapq.heappop(self._due)
            return 0.0
        if not self._due:
            return self._idle_ms / 1000
        return min(self._idle_ms, self._due[0] - now + 1) / 1000


class LowLatencyRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with doorbells (above) and batched acks.

    Dramatiq acks each message from the worker thread that ran it: a run of its dispatch script, a round trip of
    that thread's own.  Here a finished message's id waits in this process until its queue's consumer thread
    comes round (before every fetch or wait, and when it closes), which acks everything finished meanwhile in one
    pipelined round trip — measured at 256 turns in flight, −14 % worker CPU a turn (docs/performance.md, *Acks in batches*).
    An ack still waiting when the process dies is a message Redis still counts as this worker's: Dramatiq's
    maintenance hands it to another worker once this one's heartbeat is stale, as it does a message that was
    running — so it runs again, and every actor is idempotent (``worker/runtime.py``).  A flush that fails keeps
    its ids for the next one and raises ``ConnectionClosed``, as a failed fetch does (the consumer restarts)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finished: dict[str, list[str]] = {}  # queue → ids of messages run here, not acked in Redis yet
        self._finished_lock = threading.Lock()

    def defer_ack(self, queue_name: str, redis_message_id: str) -> None:
        with self._finished_lock:
            self._finished.setdefault(queue_name, []).append(redis_message_id)

    def flush_acks(self, queue_name: str) -> None:
        """Ack in Redis, in one round trip, every message of ``queue_name`` this process finished since the last
        flush (Dramatiq's own dispatch script, by its hash, once per id)."""
        with self._finished_lock:
            ids = self._finished.pop(queue_name, None)
        if not ids:
            return
        try:
            dispatch_by_hash(self, [(queue_name, dispatch_args(self, "ack", queue_name, i)) for i in ids], ring=False)
        except redis.RedisError as exc:
            with self._finished_lock:  # acking twice is harmless: the script removes an id only once
                self._finished[queue_name] = ids + self._finished.get(queue_name, [])
            raise ConnectionClosed(exc) from None

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):  # type: ignore[no-untyped-def]
        if queue_name.endswith(".DQ"):  # delay queues: rung by delayed enqueues, woken again when one falls due
            return _DelayQueueConsumer(self, queue_name, prefetch, min(timeout, DOORBELL_FALLBACK_MS))
        return _DoorbellConsumer(self, queue_name, prefetch, min(timeout, DOORBELL_FALLBACK_MS))

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        enqueued = super().enqueue(message, delay=delay)
        pipe = self.client.pipeline(transaction=False)
        ring_doorbells(pipe, self.namespace, {enqueued.queue_name: 1})  # the delay queue's when delayed
        pipe.execute()
        return enqueued


def ring_doorbells(pipe: Any, namespace: str, counts: dict[str, int]) -> None:
    """Queue on ``pipe`` (a Redis pipeline) the wake-ups for idle consumers: one per enqueued message."""
    for queue_name, count in counts.items():
        key = doorbell_key(namespace, queue_name)
        pipe.lpush(key, *([1] * min(count, DOORBELL_DEPTH)))
        pipe.ltrim(key, 0, DOORBELL_DEPTH - 1)


def build_broker(
    redis_url: str, *, socket_timeout: float | None = None, max_connections: int | None = None
) -> RedisBroker:
    """The broker, on a bounded blocking connection pool (``medspa.redis_pools``): a burst of enqueues waits
    for a connection instead of failing with ``MaxConnectionsError``.  ``max_connections``: the pool's size
    (default ``DEFAULT_CONNECTIONS``; a worker grows it from its thread and consumer count when it boots).
    ``socket_timeout`` bounds every Redis call and disables the client's own retries (the webhook app's
    enqueue thread: a hung Redis must fail its call, not hold it forever; the caller retries)."""
    options: dict[str, Any] = {}
    if socket_timeout is not None:
        options = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
            "client_name": "medspa-webhooks-enqueue",
        }
    client = sync_client(redis_url, max_connections=max_connections or DEFAULT_CONNECTIONS, **options)
    broker = LowLatencyRedisBroker(
        client=client,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    dramatiq.set_broker(broker)
    return broker


def message_for(actor_name: str, queue_name: str, *args: object) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={}, message_id=fast_uuid()
    )


def outbox_sends(clinic_id: int, outbox_ids: Iterable[int]) -> list[dramatiq.Message]:
    """One ``send_outbox`` per committed outbox row: what a process without the actors (the console, the
    commands, staff actions) enqueues after its commit."""
    return [message_for("send_outbox", OUTBOX_QUEUE, clinic_id, outbox_id) for outbox_id in outbox_ids]


def enqueue_batch(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message]) -> None:
    """Enqueue several messages — or one — in one Redis round trip, their queues' doorbells rung in it.

    Runs Dramatiq's own dispatch script once per message, exactly as
    ``RedisBroker.enqueue`` does, but pipelined (``dispatch_by_hash``): under load
    the webhook app spent a quarter of its CPU on one-at-a-time round trips, and
    asking ``SCRIPT EXISTS`` first was 8.5 % of its profile samples at 256 turns
    in flight (docs/performance.md).  Any other broker (or a Dramatiq whose internals changed)
    falls back to ``enqueue``.
    """
    scripts = getattr(broker, "scripts", None)
    if not isinstance(broker, RedisBroker) or not scripts or "dispatch" not in scripts:
        for message in messages:
            broker.enqueue(message)
        return
    if not messages:
        return
    calls: list[tuple[str, list[Any]]] = []  # (queue, the dispatch script's arguments)
    enqueued: list[dramatiq.Message] = []
    for message in messages:
        message = message.copy(options={"redis_message_id": fast_uuid()})
        broker.emit_before("enqueue", message, None)
        args = dispatch_args(
            broker, "enqueue", message.queue_name, message.options["redis_message_id"], message.encode()
        )
        calls.append((message.queue_name, args))
        enqueued.append(message)
    dispatch_by_hash(broker, calls, ring=True)
    for message in enqueued:
        broker.emit_after("enqueue", message, None)


def dispatch_args(broker: RedisBroker, command: str, queue_name: str, *args: Any) -> list[Any]:
    """The arguments of Dramatiq's dispatch script for ``command`` on ``queue_name``, as ``RedisBroker`` passes
    them — without its chance of queue maintenance (the consumers' fetches run it)."""
    return [
        command,
        current_millis(),
        queue_name,
        broker.broker_id,
        broker.heartbeat_timeout,
        broker.dead_message_ttl,
        0,
        broker._max_unpack_size(),
        *args,
    ]


def dispatch_by_hash(broker: RedisBroker, calls: list[tuple[str, list[Any]]], *, ring: bool) -> None:
    """Run Dramatiq's dispatch script once per call (its queue, ``dispatch_args``) in one round trip, by the
    script's hash (``EVALSHA``; redis-py's ``Script`` on a pipeline would first ask ``SCRIPT EXISTS``, a second
    round trip); with ``ring`` the calls' queues' doorbells are rung in the same round trip.  When Redis has lost
    its scripts (a restart, ``SCRIPT FLUSH``) the calls it refused are sent again after loading it."""
    dispatch = broker.scripts["dispatch"]
    refused = _pipelined(broker, dispatch.sha, calls, ring)
    if refused:
        broker.client.script_load(dispatch.script)
        if _pipelined(broker, dispatch.sha, refused, ring):
            raise NoScriptError("Redis refused Dramatiq's dispatch script right after loading it")


def _pipelined(
    broker: RedisBroker, sha: str, calls: list[tuple[str, list[Any]]], ring: bool
) -> list[tuple[str, list[Any]]]:
    """One pipeline: every call of the dispatch script, then (``ring``) the doorbells of their queues.  Returns the
    calls Redis refused for want of the script (nothing else was skipped: the pipeline is not a transaction);
    raises the first other error."""
    pipe = broker.client.pipeline(transaction=False)
    counts: dict[str, int] = {}
    for queue_name, args in calls:
        pipe.evalsha(sha, 1, broker.namespace, *args)
        counts[queue_name] = counts.get(queue_name, 0) + 1
    if ring:
        ring_doorbells(pipe, broker.namespace, counts)  # same round trip
    results = pipe.execute(raise_on_error=False)
    dispatched = results[: len(calls)]  # the doorbells' results follow
    refused = [call for call, result in zip(calls, dispatched, strict=True) if isinstance(result, NoScriptError)]
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, NoScriptError):
            raise result
    return refused
