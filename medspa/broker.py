"""The Dramatiq broker (Redis), shared by the webhook app and the workers.

The webhook app enqueues by actor *name* (``enqueue``) so it never imports the
worker's code, the LLM client or the integrations.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

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


def build_broker(redis_url: str) -> RedisBroker:
    broker = RedisBroker(
        url=redis_url,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    dramatiq.set_broker(broker)
    return broker


def message_for(actor_name: str, queue_name: str, *args: object) -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={})
