"""How worker code hands work on: enqueueing actors by name, and sending just-committed replies inline.

Actors and flows enqueue follow-ups by actor *name*, only after their transaction committed, as the webhook
app does (``medspa.broker.message_for``): no module imports an actor module, so actors stay leaves.  The
queue comes from the actor's own declaration (``worker.runtime.actor``), never from the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq

from medspa.broker import enqueue_batch, message_for
from worker import runtime
from worker.outbox.rows import ClaimedSend

log = logging.getLogger(__name__)


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
    costs a poll interval of latency and an actor dispatch).  ``claimed`` rows were claimed by the commit that
    produced them; the others go through the claim step.  Either way each row is sent at most once; anything
    that must wait or be retried goes to the ``send_outbox`` actor.  The last row's "sent" is written by the
    process's batched recorder (``worker.outbox.sent_marks``) unless ``more_follow`` (the conversation's next turn
    runs right after, and its reply is claimed only when nothing earlier is unsent); the earlier rows are marked
    before the next is claimed."""
    from worker.outbox.ports import send_ports
    from worker.outbox.sender import RetryLater, send_claimed, send_one

    ports = send_ports(runtime.container(), runtime.limiter())
    later: list[dramatiq.Message] = []
    work: list[ClaimedSend | int] = [*claimed, *outbox_ids]
    for index, item in enumerate(work):
        outbox_id = item if isinstance(item, int) else item.id
        last = index == len(work) - 1 and not more_follow
        try:
            if isinstance(item, int):
                outcome = send_one(ports, clinic_id, item, record_later=last)
            else:
                outcome = send_claimed(ports, clinic_id, item, record_later=last)
        except RetryLater:
            later.append(message("send_outbox", clinic_id, outbox_id))
            continue
        except Exception:
            # A claimed row left in 'sending' is reconciled by the sweeper (never blindly re-sent).
            log.exception(
                "inline send failed; handing the rest to the send actor",
                extra={"clinic_id": clinic_id, "outbox_id": outbox_id},
            )
            later += [message("send_outbox", clinic_id, w if isinstance(w, int) else w.id) for w in work[index:]]
            break
        if outcome.status == "deferred":
            enqueue("send_outbox", clinic_id, outbox_id, delay=max(50, outcome.delay_ms or 100))
    if later:
        enqueue_batch(runtime.broker(), later)
