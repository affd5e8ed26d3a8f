"""The Dramatiq broker (Redis), shared by the webhook app and the workers.

The webhook app enqueues by actor *name* (``enqueue``) so it never imports the
worker's code, the LLM client or the integrations.
"""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from medspa.ids import fast_uuid

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


# An idle consumer polls Redis with a backoff that grows to the worker timeout (1 s by default): a new
# message then waits up to a second per hop (webhook → turn → send).  Capping it keeps a reply's queueing
# latency under ~100 ms per hop for ~10 cheap polls per second per idle queue.
IDLE_POLL_MS = 100


class LowLatencyRedisBroker(RedisBroker):
    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):  # type: ignore[no-untyped-def]
        return super().consume(queue_name, prefetch, min(timeout, IDLE_POLL_MS))


def build_broker(redis_url: str) -> RedisBroker:
    broker = LowLatencyRedisBroker(
        url=redis_url,
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


def enqueue_batch(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message]) -> None:
    """Enqueue several messages in one Redis round trip.

    Runs Dramatiq's own dispatch script once per message, exactly as
    ``RedisBroker.enqueue`` does, but pipelined: under load the webhook app
    spent a quarter of its CPU on one-at-a-time round trips.  Any other broker
    (or a Dramatiq whose internals changed) falls back to ``enqueue``.
    """
    scripts = getattr(broker, "scripts", None)
    if not isinstance(broker, RedisBroker) or not scripts or "dispatch" not in scripts or len(messages) == 1:
        for message in messages:
            broker.enqueue(message)
        return
    dispatch = scripts["dispatch"]
    pipe = broker.client.pipeline(transaction=False)
    for message in messages:
        message = message.copy(options={"redis_message_id": fast_uuid()})
        broker.emit_before("enqueue", message, None)
        args = [
            "enqueue", current_millis(), message.queue_name, broker.broker_id, broker.heartbeat_timeout,
            broker.dead_message_ttl, 0, broker._max_unpack_size(),  # no maintenance from the web process
            message.options["redis_message_id"], message.encode(),
        ]
        dispatch(args=args, keys=[broker.namespace], client=pipe)
    pipe.execute()
