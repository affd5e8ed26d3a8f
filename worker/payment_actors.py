"""Actors for payment events, deposits and calendar sync: thin wrappers over ``payments_flow`` and
``calendar_sync``.

Retries are explicit:
- ``handle_payment_event`` (a recorded Stripe or test-mode event) is retried with backoff; applying an event
  twice changes nothing (``processed_webhook_events``), and its texts are sent at most once (the outbox claim).
- ``sync_calendar_event`` retries retryable calendar errors itself, with its
  own backoff (``calendar_sync.CALENDAR_BACKOFF_MS``), then records ``calendar_sync =
  'failed'`` and logs an error; the booking is never touched by a calendar
  failure.  A Redis marker tells the scheduled sweep not to enqueue a second
  chain while one waits for its next attempt.
- ``refund_deposit`` lets Dramatiq retry a retryable Stripe error (the
  idempotency key ``refund:{appointment_id}`` makes every retry the same refund).
- The scheduled actors are sweeps over the database; they never retry (the
  next slot runs them again).  What they send goes through the send path
  (``worker.sending.send_committed``), whose ``send_outbox`` actor retries.
"""

from __future__ import annotations

import logging

from domain.ports import Calendar, CalendarError
from medspa.broker import INBOUND_QUEUE, SCHEDULED_QUEUE
from worker import calendar_sync, deposit_refunds, payments_flow
from worker.container import Container
from worker.integrations.console import DatabaseOnlyCalendar
from worker.runtime import actor, container
from worker.sending import enqueue, send_committed

log = logging.getLogger(__name__)

SWEEP_MARK_TTL_MS = 120_000


def external_calendar(c: Container) -> Calendar | None:
    """The calendar to sync to, or None when the clinic runs database-only."""
    return None if isinstance(c.calendar, DatabaseOnlyCalendar) else c.calendar


def _sweep_mark(clinic_id: int, appointment_id: int) -> str:
    return f"calendar-sync:{clinic_id}:{appointment_id}"


@actor(queue_name=INBOUND_QUEUE, max_retries=5, min_backoff=1000, max_backoff=60_000)
def handle_payment_event(clinic_id: int, inbox_id: int) -> None:
    payments_flow.apply_payment_event(container(), clinic_id, inbox_id, send_committed)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=3, min_backoff=1_000, max_backoff=30_000, time_limit=120_000)
def sync_calendar_event(clinic_id: int, appointment_id: int, attempt: int = 0) -> None:
    c = container()
    try:
        outcome = calendar_sync.sync_appointment(c.database, external_calendar(c), clinic_id, appointment_id)
    except CalendarError as exc:
        delay = calendar_sync.calendar_retry_delay_ms(attempt, exc)
        if delay is None:
            calendar_sync.mark_failed(c.database, clinic_id, appointment_id)
            log.error(
                "calendar sync failed; the booking stands, calendar_sync=failed",
                extra={
                    "clinic_id": clinic_id,
                    "appointment_id": appointment_id,
                    "attempts": attempt + 1,
                    "retryable": exc.retryable,
                },
            )
            return
        c.redis.set(_sweep_mark(clinic_id, appointment_id), attempt + 1, px=delay + SWEEP_MARK_TTL_MS)
        log.warning(
            "calendar sync failed; retrying",
            extra={"clinic_id": clinic_id, "appointment_id": appointment_id, "attempt": attempt + 1, "delay_ms": delay},
        )
        enqueue("sync_calendar_event", clinic_id, appointment_id, attempt + 1, delay=delay)
        return
    if outcome == "stale":  # changed while we synced: once more with the new facts
        enqueue("sync_calendar_event", clinic_id, appointment_id, attempt)
        return
    c.redis.delete(_sweep_mark(clinic_id, appointment_id))  # a later change may be swept at once


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def sweep_calendar_sync() -> None:
    """Enqueue syncs for appointments whose calendar copy is due (bookings, reschedules and cancellations
    made by the tools mark rows 'pending'; this is what picks them up)."""
    c = container()
    for clinic_id in c.database.clinic_ids():
        for appointment_id in calendar_sync.pending_appointments(c.database, clinic_id):
            if c.redis.set(_sweep_mark(clinic_id, appointment_id), 0, nx=True, px=SWEEP_MARK_TTL_MS):
                enqueue("sync_calendar_event", clinic_id, appointment_id)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def expire_deposit_holds() -> None:
    payments_flow.expire_due_holds(container(), send_committed)


# Charges money back: retried explicitly and boundedly; the idempotency key makes retries one refund.
@actor(queue_name=SCHEDULED_QUEUE, max_retries=5, min_backoff=2_000, max_backoff=300_000, time_limit=60_000)
def refund_deposit(clinic_id: int, appointment_id: int) -> None:
    result = deposit_refunds.refund_deposit_for(container(), clinic_id, appointment_id)
    log.info("refund_deposit done", extra={"clinic_id": clinic_id, "appointment_id": appointment_id, "result": result})


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def retry_deposit_refunds() -> None:
    """Cancelled appointments whose paid deposit was neither refunded nor kept (the cancel tool's inline
    refund failed): decide and refund per policy."""
    c = container()
    for clinic_id in c.database.clinic_ids():
        for appointment_id in deposit_refunds.unrefunded_cancellations(c, clinic_id):
            enqueue("refund_deposit", clinic_id, appointment_id)
