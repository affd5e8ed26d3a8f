"""Actors of the conversation pipeline: inbound event → turns → sends, and the recovery sweep.

Thin and idempotent: each takes ids, calls the pipeline, and enqueues follow-ups (by name) only after its
transaction committed.  Retries are explicit; a send is at most once per row because of its claim, not because
of a retry count.
"""

from __future__ import annotations

from medspa.broker import BULK_QUEUE, INBOUND_QUEUE, OUTBOX_QUEUE, SCHEDULED_QUEUE, TURNS_QUEUE
from worker.runtime import actor, container, limiter
from worker.sending import enqueue, send_committed

# What the sweeper re-enqueues, by the kind of work it found.
SWEEP_ACTORS = {
    "inbound": "handle_inbound_event",
    "payment": "handle_payment_event",
    "conversation": "run_conversation",
    "outbox": "send_outbox",
    "outbox_bulk": "send_outbox_bulk",
    "missed_call": "handle_missed_call",
    "media": "fetch_message_media",
}


@actor(queue_name=INBOUND_QUEUE, max_retries=3, min_backoff=1000, max_backoff=30_000, time_limit=300_000)
def handle_inbound_event(clinic_id: int, inbox_id: int) -> None:
    # On SIGTERM Dramatiq stops fetching and lets running turns finish (docker-compose's stop_grace_period
    # covers a turn); a turn cut short anyway is resumed by another worker when its lease expires.
    from worker.turn_ports import turn_ports
    from worker.turns import handle_inbound

    handle_inbound(turn_ports(container()), clinic_id, inbox_id, send_committed, _fetch_media)


def _fetch_media(clinic_id: int, media_ids: list[int]) -> None:
    for media_id in media_ids:
        enqueue("fetch_message_media", clinic_id, media_id)


@actor(queue_name=TURNS_QUEUE, max_retries=3, min_backoff=1000, max_backoff=30_000, time_limit=300_000)
def run_conversation(clinic_id: int, conversation_id: int) -> None:
    from worker.turn_ports import turn_ports
    from worker.turns import run_conversation as run

    run(turn_ports(container()), clinic_id, conversation_id, send_committed)


def _send(clinic_id: int, outbox_id: int, actor_name: str) -> None:
    from worker.outbox.ports import send_ports
    from worker.outbox.sender import RetryLater, send_one

    try:
        outcome = send_one(send_ports(container(), limiter()), clinic_id, outbox_id)
    except RetryLater:
        raise  # Dramatiq retries with backoff; the row is 'unknown' and will be reconciled first
    if outcome.status == "deferred" and outcome.delay_ms is not None:
        enqueue(actor_name, clinic_id, outbox_id, delay=max(50, outcome.delay_ms))


# Sends: retried explicitly (at most once per row is guaranteed by the claim, not by retry counts).
@actor(queue_name=OUTBOX_QUEUE, max_retries=6, min_backoff=500, max_backoff=30_000, time_limit=60_000)
def send_outbox(clinic_id: int, outbox_id: int) -> None:
    _send(clinic_id, outbox_id, "send_outbox")


@actor(queue_name=BULK_QUEUE, max_retries=6, min_backoff=1000, max_backoff=60_000, time_limit=60_000)
def send_outbox_bulk(clinic_id: int, outbox_id: int) -> None:
    _send(clinic_id, outbox_id, "send_outbox_bulk")


def _sweep_enqueue(kind: str, clinic_id: int, item_id: int) -> None:
    enqueue(SWEEP_ACTORS[kind], clinic_id, item_id)


# Scheduled (every 10 s): never retried, the next slot sweeps again.
@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def sweep() -> None:
    from worker.sweeper import SweepDeadlines
    from worker.sweeper import sweep as run_sweep

    run_sweep(container().database, _sweep_enqueue, SweepDeadlines.of(container().settings))
