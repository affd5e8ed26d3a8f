"""Work the console hands to the workers after a change commits, enqueued by actor name
(``medspa.broker.message_for``) through the process's one broker (``console.outside.ConsoleOutside``), as the
webhook app and the commands do — the console never imports an actor.

Best effort by design, each with a backstop: a campaign set sending is started by the scheduler's campaign tick
within 30 s anyway (this only saves the wait); an article's missing embeddings are filled by the next
``embed_kb_document`` of it, ``medspa kb ingest`` or ``medspa dev`` (until then it is found by full text); a
patient's text left queued is handed to a sender by the outbox sweeper.
"""

from __future__ import annotations

from collections.abc import Sequence

from console.outside import ConsoleOutside
from medspa.broker import BULK_QUEUE, message_for, outbox_sends


def start_campaign_runner(outside: ConsoleOutside, clinic_id: int, campaign_id: int) -> None:
    outside.enqueue([message_for("run_campaign_slice", BULK_QUEUE, clinic_id, campaign_id)])


def embed_article(outside: ConsoleOutside, clinic_id: int, document_id: int) -> None:
    outside.enqueue([message_for("embed_kb_document", BULK_QUEUE, clinic_id, document_id)])


def send_texts(outside: ConsoleOutside, clinic_id: int, outbox_ids: Sequence[int]) -> None:
    """Texts committed to the outbox (a patient told about a change staff made): one ``send_outbox`` each."""
    outside.enqueue(outbox_sends(clinic_id, outbox_ids))
