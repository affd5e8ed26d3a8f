"""Actors for deposits and calendar sync: thin wrappers over ``payments_flow`` and ``calendar_sync``.

Retries are explicit:
- ``sync_calendar_event`` retries retryable calendar errors itself, with its
  own backoff (``calendar_sync.CALENDAR_BACKOFF_MS``), then records ``calendar_sync =
  'failed'`` and logs an error; the booking is never touched by a calendar
  failure.  A Redis marker tells the scheduled sweep not to enqueue a second
  chain while one waits for its next attempt.
- ``refund_deposit`` lets Dramatiq retry a retryable Stripe error (the
  idempotency key ``refund:{appointment_id}`` makes every retry the same refund).
- The scheduled actors are sweeps over the database; they never retry (the
  next slot runs them again).
"""

from __future__ import annotations

import logging

import dramatiq

from domain.ports import Calendar, CalendarError
from medspa.broker import SCHEDULED_QUEUE
from worker import calendar_sync, payments_flow
from worker.actors import _send_outbox, container
from worker.container import Container
from worker.integrations.console import DatabaseOnlyCalendar

log = logging.getLogger(__name__)

SWEEP_MARK_TTL_MS = 120_000


def external_calendar(c: Container) -> Calendar | None:
    """The calendar to sync to, or None when the clinic runs database-only."""
    return None if isinstance(c.calendar, DatabaseOnlyCalendar) else c.calendar


def _sweep_mark(clinic_id: int, appointment_id: int) -> str:
    return f"calendar-sync:{clinic_id}:{appointment_id}"


@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=3, min_backoff=1_000, max_backoff=30_000, time_limit=120_000)
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
        sync_calendar_event.send_with_options(args=(clinic_id, appointment_id, attempt + 1), delay=delay)
        return
    if outcome == "stale":  # changed while we synced: once more with the new facts
        sync_calendar_event.send(clinic_id, appointment_id, attempt)
        return
    c.redis.delete(_sweep_mark(clinic_id, appointment_id))  # a later change may be swept at once


@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def sweep_calendar_sync() -> None:
    """Enqueue syncs for appointments whose calendar copy is due (bookings, reschedules and cancellations
    made by the tools mark rows 'pending'; this is what picks them up)."""
    c = container()
    for clinic_id in _clinic_ids(c):
        for appointment_id in calendar_sync.pending_appointments(c.database, clinic_id):
            if c.redis.set(_sweep_mark(clinic_id, appointment_id), 0, nx=True, px=SWEEP_MARK_TTL_MS):
                sync_calendar_event.send(clinic_id, appointment_id)


@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def expire_deposit_holds() -> None:
    payments_flow.expire_due_holds(container(), _send_outbox)


# Charges money back: retried explicitly and boundedly; the idempotency key makes retries one refund.
@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=5, min_backoff=2_000, max_backoff=300_000, time_limit=60_000)
def refund_deposit(clinic_id: int, appointment_id: int) -> None:
    result = payments_flow.refund_deposit_for(container(), clinic_id, appointment_id)
    log.info("refund_deposit done", extra={"clinic_id": clinic_id, "appointment_id": appointment_id, "result": result})


@dramatiq.actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def retry_deposit_refunds() -> None:
    """Cancelled appointments whose paid deposit was neither refunded nor kept (the cancel tool's inline
    refund failed): decide and refund per policy."""
    c = container()
    for clinic_id in _clinic_ids(c):
        for appointment_id in payments_flow.unrefunded_cancellations(c, clinic_id):
            refund_deposit.send(clinic_id, appointment_id)


def _clinic_ids(c: Container) -> list[int]:
    from sqlalchemy import text

    with c.database.directory_scope() as session:
        return [int(r) for r in session.execute(text("SELECT id FROM clinics ORDER BY id")).scalars()]
