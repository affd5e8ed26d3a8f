"""Actors of handoff notifications (``worker/handoff_notify.py``): thin, idempotent, explicit retries, leaves.

``notify_handoffs`` runs after a commit that handed a conversation off (enqueued by name by the turn); the
scheduled ``sweep_handoff_notifications`` runs the same step for every clinic with alerts or emails waiting,
which also closes batch windows and ends quiet hours."""

from __future__ import annotations

import logging

from medspa.broker import OUTBOX_QUEUE, SCHEDULED_QUEUE
from worker.runtime import actor, container
from worker.sending import enqueue

log = logging.getLogger(__name__)
# A batch that waits less than this is woken by a delayed message; longer waits (quiet hours) by the sweep.
_SELF_WAKE_MAX_MS = 10 * 60 * 1000


def _step(clinic_id: int) -> None:
    from worker.handoff_notify import ClinicFacts, notify, send_emails
    from worker.integrations.email import email_sender

    c = container()
    profile, routing = c.clinic(clinic_id)
    facts = ClinicFacts(
        clinic_id,
        profile.name,
        profile.timezone,
        str(routing.get("sms_number") or ""),
        str(routing["oncall_phone"]) if routing.get("oncall_phone") else None,
    )
    now = c.clock.now()
    result = notify(c.database, facts, c.settings, now)
    for outbox_id in result.outbox_ids:
        enqueue("send_outbox", clinic_id, outbox_id)
    if result.wait_until is not None:
        delay_ms = int((result.wait_until - now).total_seconds() * 1000) + 250
        if delay_ms <= _SELF_WAKE_MAX_MS:
            enqueue("notify_handoffs", clinic_id, delay=max(250, delay_ms))
    send_emails(c.database, clinic_id, email_sender(c.settings))


@actor(queue_name=OUTBOX_QUEUE, max_retries=5, min_backoff=2_000, max_backoff=60_000, time_limit=120_000)
def notify_handoffs(clinic_id: int) -> None:
    _step(clinic_id)


# Scheduled: never retried, the next slot sweeps again.
@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def sweep_handoff_notifications() -> None:
    from worker.handoff_notify import clinics_waiting

    database = container().database
    for clinic_id in clinics_waiting(database, database.clinic_ids()):
        try:
            _step(clinic_id)
        except Exception:  # one clinic's failure (an SMTP outage) must not hold up the others
            log.exception("handoff notification step failed", extra={"clinic_id": clinic_id})
