"""Actors for automations and campaigns: thin wrappers over ``automations`` and the ``campaigns`` package.

- ``run_automations`` (scheduled, every 60 s): every clinic's due automation
  messages, created once and handed to the bulk sender.  Never retried: the
  next slot scans again and finds whatever this one missed.
- ``tick_campaigns`` (scheduled, every 30 s): starts scheduled campaigns whose
  time came and (re)starts a runner for every campaign with due work — so a
  killed runner, a lost Redis message or a recipient deferred to 08:00 is
  picked up from the database.
- ``run_campaign_slice``: up to 30 s of fan-out for one campaign (one runner
  per lane via a Redis lease; a capped campaign has one lane, an uncapped one
  two), then re-enqueues itself while due work remains.  Bounded slices keep
  shutdowns and restarts cheap.
- ``send_campaign_batch``: sends a batch of committed campaign outbox rows
  (``campaigns.sending.send_batch``: the outbox's claim, consent re-check and
  shared rate limiter, a chunk of rows per transaction), paced by the
  campaign's own cap; the campaign's status is checked before every chunk.
"""

from __future__ import annotations

import logging

from medspa.broker import BULK_QUEUE, SCHEDULED_QUEUE
from worker import automations
from worker.campaigns.lifecycle import get_campaign, start_due_campaigns
from worker.campaigns.runner import CampaignPacer, Dispatch, RunnerLease, run_campaign
from worker.campaigns.sending import send_batch
from worker.runtime import actor, container, limiter
from worker.sending import enqueue, enqueue_bulk_sends

log = logging.getLogger(__name__)

SLICE_S = 30.0
UNCAPPED_LANES = 2  # runners per uncapped campaign
UNCAPPED_CHUNK = 50  # outbox ids per send_campaign_batch message when uncapped (parallel senders)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=120_000)
def run_automations() -> None:
    c = container()
    now = c.clock.now()
    for clinic_id in c.database.clinic_ids():
        try:
            result = automations.scan_clinic(c.database, clinic_id, now)
        except Exception:
            log.exception("automation scan failed; the next slot retries", extra={"clinic_id": clinic_id})
            continue
        enqueue_bulk_sends(clinic_id, result.outbox_ids)


@actor(queue_name=SCHEDULED_QUEUE, max_retries=0, time_limit=60_000)
def tick_campaigns() -> None:
    c = container()
    for clinic_id in c.database.clinic_ids():
        with c.database.tenant_scope(clinic_id) as session:
            due = start_due_campaigns(session, clinic_id, c.clock.now())
        for campaign_id in due:
            enqueue("run_campaign_slice", clinic_id, campaign_id)


def dispatcher(clinic_id: int, campaign_id: int, cap_per_s: float | None) -> Dispatch:
    """How a runner hands committed outbox ids to senders: one paced batch when capped, else parallel chunks."""

    def dispatch(outbox_ids: list[int]) -> None:
        chunk = len(outbox_ids) if cap_per_s else UNCAPPED_CHUNK
        for start in range(0, len(outbox_ids), chunk):
            enqueue("send_campaign_batch", clinic_id, campaign_id, outbox_ids[start : start + chunk], cap_per_s)

    return dispatch


# Long-running by design (a slice is ~30 s of fan-out); retried because a crash mid-slice loses nothing.
@actor(queue_name=BULK_QUEUE, max_retries=3, min_backoff=5_000, max_backoff=60_000, time_limit=int(SLICE_S * 1000 * 4))
def run_campaign_slice(clinic_id: int, campaign_id: int, lane: int = 0) -> None:
    c = container()
    lease = RunnerLease(c.redis, clinic_id, campaign_id, int(SLICE_S * 3), lane=lane)
    if not lease.acquire():
        return  # another runner is on this lane
    try:
        with c.database.tenant_scope(clinic_id) as session:
            cap = get_campaign(session, clinic_id, campaign_id).rate_cap_per_s
        if lane == 0 and not cap:
            # Uncapped: more runners decide batches in parallel (SKIP LOCKED splits the recipients).
            for extra in range(1, UNCAPPED_LANES):
                enqueue("run_campaign_slice", clinic_id, campaign_id, extra)
        result = run_campaign(
            c.database,
            clinic_id,
            campaign_id,
            dispatcher(clinic_id, campaign_id, cap),
            clock=c.clock.now,
            slice_s=SLICE_S,
        )
    finally:
        lease.release()
    log.info(
        "campaign slice done",
        extra={
            "clinic_id": clinic_id,
            "campaign_id": campaign_id,
            "status": result.status,
            "queued": result.queued,
            "deferred": result.deferred,
            "excluded": result.excluded,
            "more": result.more,
        },
    )
    if result.more and lane == 0:
        enqueue("run_campaign_slice", clinic_id, campaign_id)


# Sends: each row at most once (the claim); a retry re-walks the batch and skips what was claimed already.
@actor(queue_name=BULK_QUEUE, max_retries=3, min_backoff=1_000, max_backoff=30_000, time_limit=600_000)
def send_campaign_batch(clinic_id: int, campaign_id: int, outbox_ids: list[int], cap_per_s: float | None) -> None:
    c = container()
    from worker.outbox.ports import send_ports

    pacer = CampaignPacer(c.redis) if cap_per_s else None
    ports = send_ports(c, limiter())
    result = send_batch(ports, clinic_id, campaign_id, outbox_ids, cap_per_s=cap_per_s, pacer=pacer)
    for outbox_id, delay_ms in result.retry_later:
        enqueue("send_outbox_bulk", clinic_id, outbox_id, delay=max(50, delay_ms))
    if result.failed or result.unknown:
        log.warning(
            "campaign batch had failures",
            extra={
                "clinic_id": clinic_id,
                "campaign_id": campaign_id,
                "failed": result.failed,
                "unknown": result.unknown,
            },
        )
