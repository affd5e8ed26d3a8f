"""Recovery: re-enqueue what was recorded but never finished.

Runs on a schedule (every few seconds).  Redis may have lost every queued
message (restart without persistence, flush) — Postgres has not, so this finds
the work again from the database:
- inbox events still ``received`` after a deadline (the handler quarantines an
  event whose deliveries keep crashing workers, see ``worker/turns.py``) — a
  ``voice`` event (a missed call) goes to ``handle_missed_call``;
- photos still ``pending`` a fetch after the inbox deadline (``worker/media.py``);
- conversations with unanswered messages and no live lease;
- outbox rows still ``queued`` after a deadline, or whose send outcome was never
  recorded (``sending``/``unknown``: reconciled with the provider before re-send);
  a row deferred to its recipient's window (``not_before``) waits until then.
Everything it enqueues is idempotent, so racing the normal path is harmless.

A claimed row (``sending``) is marked ``unknown`` only when its ``claimed_at`` is
``OUTBOX_SWEEP_AFTER_S`` old.  A live sender renews that before every provider
call its claim is no longer fresh for (``worker.outbox.rows.Claim``), and a
sender that stalled past the deadline finds its claim gone when it renews, so
the row marked here is never sent by both.  The outbox's statements are the
outbox's own (``worker.outbox.writes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text

from db.engine import Database
from domain.outbox import BULK_KINDS
from medspa.settings import Settings
from worker.media import stale_pending_media
from worker.outbox.writes import mark_due_for_resend, take_back_stale_claims

log = logging.getLogger(__name__)

Enqueue = Callable[[str, int, int], None]  # (kind, clinic_id, id)

# Re-enqueue each stale event at most once per deadline: a long backlog must not be amplified.
_STALE_INBOX = """
UPDATE inbox_events SET swept_at = now()
WHERE id IN (SELECT id FROM inbox_events WHERE status = 'received'
               AND received_at < now() - make_interval(secs => :after)
               AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => :after))
             ORDER BY id LIMIT :batch)
RETURNING id, source
"""
_UNANSWERED_CONVERSATIONS = """
SELECT id FROM conversations
WHERE last_inbound_seq > answered_seq
  AND (lease_owner IS NULL OR lease_expires_at < now())
  AND last_message_at < now() - interval '5 seconds'
ORDER BY last_message_at LIMIT :batch
"""


# Which work a stale inbox event is, by its source (anything else is a patient's message).
_INBOX_KINDS = {"stripe": "payment", "voice": "missed_call"}


@dataclass(frozen=True)
class SweepDeadlines:
    inbox_after_s: float  # an inbox event still 'received' this long is handed to a worker again
    outbox_after_s: float  # an outbox row waiting (or claimed) this long is handed to a sender again

    @classmethod
    def of(cls, settings: Settings) -> SweepDeadlines:
        return cls(settings.inbox_sweep_after_s, settings.outbox_sweep_after_s)


@dataclass
class SweepReport:
    inbox: int = 0
    conversations: int = 0
    outbox: int = 0
    reconciling: int = 0
    media: int = 0
    per_clinic: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.inbox + self.conversations + self.outbox + self.reconciling + self.media


def sweep(database: Database, enqueue: Enqueue, deadlines: SweepDeadlines, *, batch: int = 1000) -> SweepReport:
    report = SweepReport()
    for clinic_id in database.clinic_ids():
        with database.tenant_scope(clinic_id) as session:
            stale = session.execute(text(_STALE_INBOX), {"after": deadlines.inbox_after_s, "batch": batch}).all()
            conversations = session.execute(text(_UNANSWERED_CONVERSATIONS), {"batch": batch}).scalars().all()
            unknown = take_back_stale_claims(session, deadlines.outbox_after_s, batch)
            queued = mark_due_for_resend(session, deadlines.outbox_after_s, batch)
            media = stale_pending_media(session, deadlines.inbox_after_s, batch)
        for inbox_id, source in stale:
            enqueue(_INBOX_KINDS.get(source, "inbound"), clinic_id, int(inbox_id))
            report.inbox += 1
        for media_id in media:  # photos recorded but never fetched
            enqueue("media", clinic_id, media_id)
            report.media += 1
        for conversation_id in conversations:
            enqueue("conversation", clinic_id, int(conversation_id))
            report.conversations += 1
        for outbox_id, kind in {*unknown, *queued}:
            # Campaign and automation traffic goes back on the bulk queue, behind conversation replies.
            enqueue("outbox_bulk" if kind in BULK_KINDS else "outbox", clinic_id, int(outbox_id))
            report.outbox += 1
        report.reconciling += len(unknown)
    if report.total:
        log.info(
            "sweep re-enqueued work",
            extra={
                "inbox": report.inbox,
                "conversations": report.conversations,
                "outbox": report.outbox,
                "reconciling": report.reconciling,
                "media": report.media,
            },
        )
    return report
