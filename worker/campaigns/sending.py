"""A campaign's committed rows, sent by the outbox's own state machine (``worker.outbox.sender``), paced by the
campaign's cap: this module only says how much to claim at once and how fast to go."""

from __future__ import annotations

from collections.abc import Sequence

from worker.campaigns.runner import CampaignPacer
from worker.outbox.ports import SendPorts
from worker.outbox.sender import SEND_CHUNK, BatchSend, Pace, send_campaign_rows

PACER_GAVE_UP_MS = 1000  # the pacer would block too long: the rest goes to the delayed single-row path


def chunk_for(cap_per_s: float | None) -> int:
    """Rows claimed per transaction.  Capped: about a tenth of a second of sends, so a pause stops within that."""
    return max(1, min(SEND_CHUNK, int(cap_per_s // 10))) if cap_per_s else SEND_CHUNK


def send_batch(
    ports: SendPorts,
    clinic_id: int,
    campaign_id: int,
    outbox_ids: Sequence[int],
    *,
    cap_per_s: float | None = None,
    pacer: CampaignPacer | None = None,
) -> BatchSend:
    """Send a batch of the campaign's committed rows; the campaign's status is checked with every chunk."""
    pace = _pacing(pacer, campaign_id, cap_per_s)
    return send_campaign_rows(ports, clinic_id, campaign_id, outbox_ids, chunk=chunk_for(cap_per_s), pace=pace)


def _pacing(pacer: CampaignPacer | None, campaign_id: int, cap_per_s: float | None) -> Pace | None:
    if pacer is None or not cap_per_s:
        return None
    cap = cap_per_s

    def pace() -> int:
        return 0 if pacer.wait(campaign_id, cap) else PACER_GAVE_UP_MS

    return pace
