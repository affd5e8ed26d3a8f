"""Actors of the front desk's inbound extras: the missed-call text-back and the photos patients text.

Thin and idempotent (ids in, a flow called); enqueued by name by the webhook app, the inbound pipeline and the
sweeper.
"""

from __future__ import annotations

from medspa.broker import INBOUND_QUEUE, OUTBOX_QUEUE
from worker.runtime import actor, container
from worker.sending import send_committed


@actor(queue_name=INBOUND_QUEUE, max_retries=3, min_backoff=1000, max_backoff=30_000, time_limit=60_000)
def handle_missed_call(clinic_id: int, inbox_id: int) -> None:
    from worker.conversations import record_failed_delivery
    from worker.missed_calls import text_back

    app = container()
    try:
        outcome = text_back(app, clinic_id, inbox_id)
    except Exception as exc:
        # Counted like any inbound event: one that keeps failing is quarantined for staff, not retried forever.
        with app.database.tenant_connection(clinic_id) as conn:
            if record_failed_delivery(conn, inbox_id, type(exc).__name__, app.settings.quarantine_after_attempts) == (
                "quarantined"
            ):
                return
        raise
    if outcome.outbox_id is not None:
        send_committed(clinic_id, [outcome.outbox_id])


# A photo's fetch is retried with backoff on provider errors (the row stays pending; after MAX_FETCH_ATTEMPTS it is
# recorded as failed), and the sweeper hands a row still pending after the inbox deadline to a worker again.
@actor(queue_name=OUTBOX_QUEUE, max_retries=5, min_backoff=2000, max_backoff=120_000, time_limit=120_000)
def fetch_message_media(clinic_id: int, media_id: int) -> None:
    from worker.media import fetch_and_store

    app = container()
    fetcher, store = app.media()
    fetch_and_store(app.database, fetcher, store, clinic_id, media_id, max_bytes=app.settings.media_max_bytes)
