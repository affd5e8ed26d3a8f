"""How worker code hands work on: enqueueing actors by name, and sending just-committed replies inline.

Actors and flows enqueue follow-ups by actor *name*, only after their transaction committed, as the webhook
app does (``medspa.broker.message_for``): no module imports an actor module, so actors stay leaves.  The
queue comes from the actor's own declaration (``worker.runtime.actor``), never from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq

from medspa.broker import enqueue_batch, message_for
from worker import runtime
from worker.outbox.rows import ClaimedSend


def message(actor_name: str, *args: Any) -> dramatiq.Message:
    """A message for ``actor_name`` on the queue it was declared on."""
    return message_for(actor_name, runtime.broker().get_actor(actor_name).queue_name, *args)


def enqueue(actor_name: str, *args: Any, delay: int | None = None) -> dramatiq.Message:
    """Enqueue ``actor_name`` with ``args`` (after ``delay`` milliseconds, when given)."""
    return runtime.broker().get_actor(actor_name).send_with_options(args=args, delay=delay)


def enqueue_bulk_sends(clinic_id: int, outbox_ids: Iterable[int]) -> None:
    """Committed automation or campaign rows for the bulk sender (replies go ahead of them)."""
    for outbox_id in outbox_ids:
        enqueue("send_outbox_bulk", clinic_id, outbox_id)


def send_committed(
    clinic_id: int, outbox_ids: list[int], claimed: Sequence[ClaimedSend] = (), more_follow: bool = False, /
) -> None:
    """Send just-committed conversation replies right here, in order, instead of another queue hop (a hop
    costs a poll interval of latency and an actor dispatch): ``worker.outbox.sender.send_in_order``, then what
    must wait or be retried goes to the ``send_outbox`` actor.  ``more_follow``: the conversation's next turn runs
    right after (see ``send_in_order``)."""
    from worker.outbox.ports import send_ports
    from worker.outbox.sender import send_in_order

    ports = send_ports(runtime.container(), runtime.limiter())
    sends = send_in_order(ports, clinic_id, claimed, outbox_ids, more_follow=more_follow)
    for outbox_id, delay_ms in sends.deferred:
        enqueue("send_outbox", clinic_id, outbox_id, delay=delay_ms)
    if sends.retry:
        enqueue_batch(runtime.broker(), [message("send_outbox", clinic_id, outbox_id) for outbox_id in sends.retry])
