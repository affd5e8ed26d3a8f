"""Actors for the visit lifecycle: thin wrappers over ``worker/visits``.

- ``charge_visit_fee``: a no-show / late-cancel fee on the card saved at booking.  Charges money, so retries are
  explicit and bounded with backoff; every retry sends the same Idempotency-Key (one charge at Stripe), and only a
  fee still ``due`` is charged (a duplicate message calls nobody).
- ``close_visit_days`` (scheduled): per clinic, auto no-show after the clinic's grace period (off by default), the
  day's unresolved visits for staff after the clinic's end-of-day time, and due fees whose message was lost.
  Never retried: the next slot scans again.
"""

from __future__ import annotations

import logging

from medspa.broker import SCHEDULED_QUEUE
from worker.runtime import actor, container
from worker.sending import enqueue, send_committed
from worker.visits import end_of_day, fees
from worker.visits.transitions import FOLLOW_UP_ACTORS

log = logging.getLogger(__name__)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=5, min_backoff=2_000, max_backoff=300_000, time_limit=60_000)
def charge_visit_fee(clinic_id: int, appointment_id: int) -> None:
    c = container()
    result = fees.charge_fee(c.database, c.payments, clinic_id, appointment_id)
    log.info(
        "charge_visit_fee done", extra={"clinic_id": clinic_id, "appointment_id": appointment_id, "result": result}
    )


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def close_visit_days() -> None:
    c = container()
    now = c.clock.now()
    for clinic_id in c.database.clinic_ids():
        try:
            day = end_of_day.close_clinic_day(c.database, clinic_id, now)
        except Exception:
            log.exception("closing the visit day failed; the next slot retries", extra={"clinic_id": clinic_id})
            continue
        for result in day.auto_no_shows:
            for kind in result.follow_ups():
                enqueue(FOLLOW_UP_ACTORS[kind][0], clinic_id, result.appointment_id)
        for appointment_id in day.stale_fees:
            enqueue("charge_visit_fee", clinic_id, appointment_id)
        if day.outbox_ids:
            send_committed(clinic_id, day.outbox_ids)
