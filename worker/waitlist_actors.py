"""The waitlist's actor (thin; the work is ``worker/waitlist/offers.py``).

- ``tick_waitlist`` (scheduled, every 20 s): per clinic, lapse the holds that ran out, close openings too close
  to book, offer each open opening to the next fitting waitlister and hand the texts to the sender.  Never
  retried: the next slot runs again and finds whatever this one missed (every step is idempotent).
"""

from __future__ import annotations

import logging

from medspa.broker import SCHEDULED_QUEUE
from worker.runtime import actor, container
from worker.sending import enqueue
from worker.waitlist.offers import tick_clinic

log = logging.getLogger(__name__)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def tick_waitlist() -> None:
    c = container()
    now = c.clock.now()
    for clinic_id in c.database.clinic_ids():
        try:
            result = tick_clinic(c.database, clinic_id, now)
        except Exception:
            log.exception("waitlist run failed; the next slot retries", extra={"clinic_id": clinic_id})
            continue
        for outbox_id in result.outbox_ids:
            enqueue("send_outbox", clinic_id, outbox_id)
