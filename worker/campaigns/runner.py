"""Fan-out: the runner works through a sending campaign's due recipients in batches — decide, render, queue one
outbox row each, hand the committed ids to senders — keeping about one batch in flight (back-pressure), so the
decisions stay close to the send and a pause withdraws what is still queued.  One runner per lane
(``RunnerLease``); a capped campaign is paced across every worker (``CampaignPacer``)."""

from __future__ import annotations

import time as _time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import text

from db.engine import Database
from domain.audience import RecipientFacts, decide
from domain.outbox import QUEUED, SENDING
from worker.campaigns.content import SendContext, load_context
from worker.campaigns.lifecycle import PAUSED_MARK, get_campaign, materialise_recipients
from worker.campaigns.segments import audience_reads
from worker.outbox.planning import planned_recipient
from worker.outbox.writes import CampaignMessage, queue_campaign_messages, segment_fields

CAMPAIGN_PRIORITY = 10  # after conversation replies (0)
DEFAULT_BATCH = 1000
PACE_SAFETY = 0.95  # pace a little under the cap so send-time jitter never pushes a second over it

Dispatch = Callable[[list[int]], None]  # hand committed outbox ids to senders
Progress = Callable[[int, int], None]  # (recipients done, recipients total)

# FOR SHARE: pause/cancel (FOR UPDATE on the campaign) waits for this batch, and the batch sees their verdict.
_STATUS_FOR_SHARE = "SELECT status FROM campaigns WHERE id = :id FOR SHARE"
_STATUS = "SELECT status FROM campaigns WHERE id = :id"
# Pick and lock the batch first, then look up facts for those rows only.
_DUE_RECIPIENTS = """
WITH picked AS (
    SELECT r.id, r.client_id FROM campaign_recipients r
    WHERE r.campaign_id = :campaign_id AND r.status = 'pending' AND (r.send_after IS NULL OR r.send_after <= :now)
    ORDER BY r.id LIMIT :batch FOR UPDATE SKIP LOCKED)
SELECT p.id AS recipient_id, {columns}
FROM picked p JOIN clients c ON c.id = p.client_id {joins}
ORDER BY p.id
"""
_RECORD_DECISIONS = """
UPDATE campaign_recipients r
SET status = u.status, exclusion_reason = u.reason, send_after = u.send_after, outbox_id = u.oid
FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]),
            CAST(:afters AS timestamptz[]), CAST(:oids AS bigint[])) AS u(id, status, reason, send_after, oid)
WHERE r.id = u.id
"""
# Deferred rows (not_before: the recipient's window closed at send time) wait for the morning and hold nothing back.
_OUTSTANDING = f"""
SELECT count(*) FROM outbox WHERE clinic_id = :c AND campaign_id = :id AND status IN ('{QUEUED}', '{SENDING}')
  AND (not_before IS NULL OR not_before <= coalesce(CAST(:now AS timestamptz), now()))
"""
_RECIPIENT_COUNT = "SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id"
_PENDING = """
SELECT count(*) FILTER (WHERE send_after IS NULL OR send_after <= :now), count(*)
FROM campaign_recipients WHERE campaign_id = :id AND status = 'pending'
"""
_COMPLETE = """
UPDATE campaigns SET status = 'completed', completed_at = :now WHERE id = :id AND status = 'sending' RETURNING status
"""


# ------------------------------------------------------------------ one batch: the decisions
@dataclass(frozen=True)
class Recipient:
    """A due recipient, locked for this batch, as the decision and the rendering read them."""

    recipient_id: int
    facts: RecipientFacts
    name: str | None
    last_service: str | None = None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Recipient:
        return cls(int(row["recipient_id"]), planned_recipient(row), row["name"], row.get("last_service"))


@dataclass(frozen=True)
class Outcome:
    """What happens to one recipient (``campaign_recipients``): excluded with a reason, pending until their
    window opens, or queued (its outbox row follows)."""

    recipient_id: int
    status: str
    reason: str | None = None
    send_after: datetime | None = None


@dataclass
class BatchPlan:
    outcomes: list[Outcome] = field(default_factory=list)  # excluded and deferred recipients
    messages: list[CampaignMessage] = field(default_factory=list)
    recipient_of: dict[int, int] = field(default_factory=dict)  # client id → recipient id, for the messages
    excluded: dict[str, int] = field(default_factory=dict)
    deferred: int = 0


def plan_batch(recipients: Sequence[Recipient], context: SendContext, now: datetime) -> BatchPlan:
    """The compliance decision for each recipient (``domain.audience.decide``: consent, 08:00–21:00
    recipient-local, weekly cap, first-message footer), and the text for those who get one now."""
    plan = BatchPlan()
    for recipient in recipients:
        decision = decide(recipient.facts, context.policy, now)
        if not decision.send:
            reason = decision.reason or "unknown"
            plan.excluded[reason] = plan.excluded.get(reason, 0) + 1
            plan.outcomes.append(Outcome(recipient.recipient_id, "excluded", reason))
            continue
        if decision.deferred:  # kept pending until their morning: deferred, never dropped
            plan.deferred += 1
            plan.outcomes.append(Outcome(recipient.recipient_id, "pending", send_after=decision.send_at))
            continue
        body = context.body(recipient.name, recipient.last_service, decision)
        segments, encoding = segment_fields("sms", body)
        plan.recipient_of[recipient.facts.client_id] = recipient.recipient_id
        plan.messages.append(CampaignMessage(recipient.facts.client_id, body, decision.footer, segments, encoding))
    return plan


@dataclass
class BatchResult:
    claimed: int = 0
    queued: int = 0
    deferred: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    outbox_ids: list[int] = field(default_factory=list)
    stopped: bool = False  # the campaign is no longer sending


def process_batch(
    database: Database, context: SendContext, campaign_id: int, now: datetime, batch_size: int = DEFAULT_BATCH
) -> BatchResult:
    """One batch of due recipients: decide, render, outbox — one transaction.  Senders come after the commit."""
    clinic_id = context.clinic_id
    result = BatchResult()
    columns, joins = audience_reads(context.template)
    with database.tenant_scope(clinic_id) as session:
        status = session.execute(text(_STATUS_FOR_SHARE), {"id": campaign_id}).scalar_one()
        if status != "sending":
            result.stopped = True
            return result
        rows = (
            session.execute(
                text(_DUE_RECIPIENTS.format(columns=columns, joins=joins)),
                {
                    "campaign_id": campaign_id,
                    "now": now,
                    "week_ago": now - timedelta(days=7),
                    "batch": batch_size,
                },
            )
            .mappings()
            .all()
        )
        result.claimed = len(rows)
        if not rows:
            return result
        plan = plan_batch([Recipient.of(row) for row in rows], context, now)
        result.excluded, result.deferred = plan.excluded, plan.deferred
        outbox_of: dict[int, int] = {}
        if plan.messages:
            outbox_of = queue_campaign_messages(
                session,
                clinic_id,
                campaign_id,
                from_address=context.sms_number,
                priority=CAMPAIGN_PRIORITY,
                messages=plan.messages,
                requeue_mark=PAUSED_MARK,
            )
        outcomes = list(plan.outcomes)
        outbox_ids: list[int | None] = [None] * len(outcomes)
        for client_id, recipient_id in plan.recipient_of.items():
            outbox_id = outbox_of.get(client_id)  # negative: a row for this person existed already (linked)
            outcomes.append(Outcome(recipient_id, "queued"))
            outbox_ids.append(abs(outbox_id) if outbox_id else None)
            if outbox_id and outbox_id > 0:
                result.outbox_ids.append(outbox_id)
        session.execute(
            text(_RECORD_DECISIONS),
            {
                "ids": [o.recipient_id for o in outcomes],
                "statuses": [o.status for o in outcomes],
                "reasons": [o.reason for o in outcomes],
                "afters": [o.send_after for o in outcomes],
                "oids": outbox_ids,
            },
        )
        result.queued = len(result.outbox_ids)
    return result


# ------------------------------------------------------------------ the run
@dataclass
class RunResult:
    status: str
    processed: int = 0
    queued: int = 0
    deferred: int = 0
    excluded: int = 0
    more: bool = False  # due work remains: run again soon


def outstanding(database: Database, clinic_id: int, campaign_id: int, now: datetime | None = None) -> int:
    """Campaign messages handed to senders and not sent yet (due by ``now``, the caller's clock)."""
    with database.tenant_scope(clinic_id) as session:
        return int(session.execute(text(_OUTSTANDING), {"c": clinic_id, "id": campaign_id, "now": now}).scalar_one())


def batch_size_for(cap_per_s: float | None) -> int:
    """About five seconds of sending per batch when capped, else a thousand."""
    if not cap_per_s:
        return DEFAULT_BATCH
    return max(10, min(DEFAULT_BATCH, int(cap_per_s * 5)))


def run_campaign(
    database: Database,
    clinic_id: int,
    campaign_id: int,
    dispatch: Dispatch,
    *,
    clock: Callable[[], datetime],
    slice_s: float = 30.0,
    batch_size: int | None = None,
    progress: Progress | None = None,
    max_in_flight: int | None = None,
) -> RunResult:
    """Work on one sending campaign for up to ``slice_s`` seconds.  Safe to run twice at once and to kill
    at any point; ``more`` says whether due work remains (the caller runs it again)."""
    deadline = _time.monotonic() + slice_s
    with database.tenant_scope(clinic_id) as session:
        campaign = get_campaign(session, clinic_id, campaign_id)
    if campaign.status != "sending":
        return RunResult(campaign.status)
    if campaign.started_at is None:
        materialise_recipients(database, clinic_id, campaign, clock())
    size = batch_size or batch_size_for(campaign.rate_cap_per_s)
    # Capped: decide the next batch once the last one is nearly sent.  Uncapped: keep two batches in flight so
    # senders never wait for the runner.
    in_flight = max_in_flight or (size if campaign.rate_cap_per_s else 2 * size)
    with database.tenant_scope(clinic_id) as session:
        context = load_context(session, clinic_id, campaign.template, campaign.segment, clock())
        total = int(session.execute(text(_RECIPIENT_COUNT), {"id": campaign_id}).scalar_one())
    result = RunResult("sending")
    while _time.monotonic() < deadline:
        # Back-pressure: decide the next batch only when the previous one is mostly sent.
        while outstanding(database, clinic_id, campaign_id, clock()) >= in_flight and _time.monotonic() < deadline:
            _time.sleep(0.05)
        if _time.monotonic() >= deadline:
            break
        batch = process_batch(database, context, campaign_id, clock(), size)
        if batch.stopped:
            with database.tenant_scope(clinic_id) as session:
                result.status = get_campaign(session, clinic_id, campaign_id).status
            return result
        if batch.outbox_ids:
            dispatch(batch.outbox_ids)
        result.processed += batch.claimed
        result.queued += batch.queued
        result.deferred += batch.deferred
        result.excluded += sum(batch.excluded.values())
        if progress:
            progress(result.processed, total)
        if batch.claimed == 0:
            break
    result.status, result.more = _settle(database, clinic_id, campaign_id, clock())
    return result


def _settle(database: Database, clinic_id: int, campaign_id: int, now: datetime) -> tuple[str, bool]:
    """Complete the campaign when nobody is left pending; else say whether pending work is due now."""
    with database.tenant_scope(clinic_id) as session:
        due, pending = session.execute(text(_PENDING), {"id": campaign_id, "now": now}).one()
        if pending == 0:
            done = session.execute(text(_COMPLETE), {"id": campaign_id, "now": now}).scalar_one_or_none()
            if done:
                return "completed", False
        status = session.execute(text(_STATUS), {"id": campaign_id}).scalar_one()
        return status, bool(due) and status == "sending"


# ------------------------------------------------------------------ pacing and runners
_PACE = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
if tat > now then return tat - now end
redis.call('SET', key, tostring(tat + interval), 'PX', math.ceil(interval / 1000) + 60000)
return 0
"""


class CampaignPacer:
    """At most one send per ``1 / (cap × 0.95)`` seconds per campaign, across every worker (Redis).

    Unlike the shared token bucket (``worker/sms_rate.py``), this has no burst:
    a campaign capped at 30/s never sends more than 30 in any one second, even
    in its first second.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_PACE)

    def wait(self, campaign_id: int, cap_per_s: float, *, max_wait_s: float = 30.0) -> bool:
        """Block until this caller may send; False if that would take longer than ``max_wait_s``."""
        interval_us = 1_000_000 / (cap_per_s * PACE_SAFETY)
        deadline = _time.monotonic() + max_wait_s
        while True:
            wait_us = int(
                self._script(keys=[f"campaign:pace:{campaign_id}"], args=[interval_us, int(_time.time() * 1_000_000)])
            )
            if wait_us <= 0:
                return True
            if _time.monotonic() + wait_us / 1e6 > deadline:
                return False
            _time.sleep(wait_us / 1e6)


class RunnerLease:
    """One runner per campaign at a time (Redis ``SET NX`` with expiry; a dead runner's lease just lapses)."""

    def __init__(self, client: redis.Redis, clinic_id: int, campaign_id: int, seconds: int, *, lane: int = 0) -> None:
        self.client = client
        self.key = f"campaign:runner:{clinic_id}:{campaign_id}:{lane}"
        self.token = uuid.uuid4().hex
        self.seconds = seconds

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, ex=self.seconds))

    def release(self) -> None:
        if self.client.get(self.key) == self.token.encode():
            self.client.delete(self.key)
