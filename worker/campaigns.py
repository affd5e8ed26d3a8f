"""Staff campaigns: a segment of clients, one templated marketing text each,
sent in compliant, paced batches.

Life cycle: ``draft`` → ``scheduled`` (or straight to ``sending``) →
``completed``; ``paused`` and ``cancelled`` on staff request.

Fan-out (``run_campaign``), restartable at any point because every step is
keyed in Postgres:
1. materialise ``campaign_recipients`` from the segment in keyset batches
   (``INSERT … SELECT … ON CONFLICT (campaign_id, client_id) DO NOTHING``);
   ``campaigns.started_at`` marks the list as complete;
2. per batch (rows claimed ``FOR UPDATE SKIP LOCKED``, so two runners split
   the work): the compliance decision at send time (``domain.audience``:
   consent, 08:00–21:00 recipient-local, weekly cap, first-message footer),
   render, one outbox row per recipient (``kind='campaign'``, dedupe key
   ``campaign:{id}:client:{client_id}`` → at most one text per person);
   recipients outside the window keep ``send_after`` = their next 08:00 and are
   picked up when due (deferred, never dropped);
3. after the batch commits, its outbox ids go to ``send_campaign_batch``
   actors that send through ``worker.outbox`` (claim, consent re-check,
   provider) paced by the campaign's own cap.  The runner keeps at most about
   one batch in flight, so decisions stay close to the send and a pause
   withdraws what is still queued.

Why deferred recipients don't get an outbox row with ``not_before`` up front:
the sweeper re-enqueues due queued rows unpaced on the reply queue; creating
the row when it is due keeps the campaign's cap and the bulk queue.
"""

from __future__ import annotations

import json
import logging
import time as _time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database
from domain import availability
from domain.audience import EXCLUSION_REASONS, Decision, RecipientFacts, SegmentFilter, SendPolicy, decide
from domain.ports import BusyInterval
from domain.segments import GSM7_BASIC, count_segments
from domain.templates import (
    CAMPAIGN_PLACEHOLDERS,
    COST_PER_SEGMENT_USD,
    Template,
    first_name,
    validate_template,
    when_label,
    with_footer,
)

log = logging.getLogger(__name__)

LIVE = ("pending_deposit", "booked", "confirmed")
CAMPAIGN_PRIORITY = 10  # after conversation replies (0)
DEFAULT_BATCH = 1000
MATERIALISE_BATCH = 10_000
PACE_SAFETY = 0.95  # pace a little under the cap so send-time jitter never pushes a second over it
REPLY_WINDOW = timedelta(days=7)
BOOKING_WINDOW = timedelta(days=14)
PAUSED_MARK = "campaign paused"
CANCELLED_MARK = "campaign cancelled"

Dispatch = Callable[[list[int]], None]  # hand committed outbox ids to senders
Progress = Callable[[int, int], None]  # (recipients done, recipients total)


class CampaignError(Exception):
    """A staff request that cannot be honoured (unknown campaign, wrong state); one clear line."""


@dataclass(frozen=True)
class Campaign:
    id: int
    clinic_id: int
    name: str
    template: str
    segment: SegmentFilter
    status: str
    scheduled_at: datetime | None
    rate_cap_per_s: float | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


# ------------------------------------------------------------------ create / read
def create_campaign(
    session: Session,
    clinic_id: int,
    *,
    name: str,
    template: str,
    segment: SegmentFilter,
    created_by: str = "",
    rate_cap_per_s: float | None = None,
) -> int:
    validate_template(template, CAMPAIGN_PLACEHOLDERS)
    if not name.strip():
        raise CampaignError("a campaign needs a name")
    if rate_cap_per_s is not None and rate_cap_per_s <= 0:
        raise CampaignError("the rate cap must be positive (messages per second)")
    return int(
        session.execute(
            text(
                """INSERT INTO campaigns (clinic_id, name, template, segment, status, rate_cap_per_s, created_by)
                   VALUES (:clinic_id, :name, :template, CAST(:segment AS jsonb), 'draft', :cap, :by) RETURNING id"""
            ),
            {
                "clinic_id": clinic_id,
                "name": name.strip(),
                "template": template,
                "segment": json.dumps(segment.to_dict()),
                "cap": rate_cap_per_s,
                "by": created_by,
            },
        ).scalar_one()
    )


def get_campaign(session: Session, clinic_id: int, campaign_id: int, *, lock: bool = False) -> Campaign:
    row = (
        session.execute(
            text("SELECT * FROM campaigns WHERE id = :id AND clinic_id = :clinic_id" + (" FOR UPDATE" if lock else "")),
            {"id": campaign_id, "clinic_id": clinic_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise CampaignError(f"no campaign {campaign_id} in this clinic")
    return Campaign(
        id=int(row["id"]),
        clinic_id=int(row["clinic_id"]),
        name=row["name"],
        template=row["template"],
        segment=SegmentFilter.from_dict(row["segment"]),
        status=row["status"],
        scheduled_at=row["scheduled_at"],
        rate_cap_per_s=row["rate_cap_per_s"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )


def list_campaigns(session: Session, clinic_id: int) -> list[dict[str, Any]]:
    rows = (
        session.execute(
            text(
                """SELECT c.id, c.name, c.status, c.scheduled_at, c.started_at, c.completed_at, c.rate_cap_per_s,
                      (SELECT count(*) FROM campaign_recipients r WHERE r.campaign_id = c.id) AS recipients
               FROM campaigns c WHERE c.clinic_id = :clinic_id ORDER BY c.id DESC"""
            ),
            {"clinic_id": clinic_id},
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


# ------------------------------------------------------------------ segment → SQL
def segment_sql(segment: SegmentFilter) -> tuple[str, dict[str, Any]]:
    """``SELECT c.id`` of the clinic's clients matching ``segment``.

    Binds ``:clinic_id``, ``:tz`` (clinic zone: visit dates are local dates) and
    ``:now`` (for future appointments), plus the filter's own values.  Visits
    are completed appointments (imported history included); spend is what those visits were charged, the
    service's list price where no amount was recorded.
    """
    needs_visits = bool(
        segment.last_visit_before or segment.last_visit_after or segment.services_had or segment.min_spend_cents
    )
    params: dict[str, Any] = {}
    where = ["c.clinic_id = :clinic_id"]
    head = ""
    join = ""
    if needs_visits:
        head = """WITH visits AS (
                    SELECT a.client_id, max(a.starts_at) AS last_visit,
                           coalesce(sum(coalesce(a.amount_charged_cents, s.price_cents)), 0) AS spend,
                           array_agg(DISTINCT s.slug::text) FILTER (WHERE s.slug IS NOT NULL) AS slugs
                    FROM appointments a LEFT JOIN services s ON s.id = a.service_id
                    WHERE a.clinic_id = :clinic_id AND a.status = 'completed' AND a.client_id IS NOT NULL
                    GROUP BY a.client_id) """
        join = " JOIN visits v ON v.client_id = c.id"
    if segment.last_visit_before:
        where.append("(v.last_visit AT TIME ZONE :tz)::date < :last_visit_before")
        params["last_visit_before"] = segment.last_visit_before
    if segment.last_visit_after:
        where.append("(v.last_visit AT TIME ZONE :tz)::date >= :last_visit_after")
        params["last_visit_after"] = segment.last_visit_after
    if segment.services_had:
        where.append("v.slugs && CAST(:services_had AS text[])")
        params["services_had"] = list(segment.services_had)
    if segment.min_spend_cents:
        where.append("v.spend >= :min_spend_cents")
        params["min_spend_cents"] = segment.min_spend_cents
    if segment.tags:
        where.append("c.tags && CAST(:tags AS text[])")
        params["tags"] = list(segment.tags)
    if segment.has_future_appointment is not None:
        exists = (
            "EXISTS (SELECT 1 FROM appointments f WHERE f.client_id = c.id AND f.kind = 'appointment' "
            "AND f.status IN ('pending_deposit','booked','confirmed') AND f.starts_at > :now)"
        )
        where.append(exists if segment.has_future_appointment else f"NOT {exists}")
    sql = f"{head}SELECT c.id FROM clients c{join} WHERE " + " AND ".join(where)
    return sql, params


_MARKETING_COUNTS = """
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE coalesce(o.sent_at, o.created_at) > :week_ago) AS week, count(*) AS ever
        FROM outbox o
        WHERE o.client_id = c.id AND (o.kind = 'campaign' OR o.meta->>'marketing' = 'true')
          AND o.status NOT IN ('cancelled', 'suppressed', 'failed', 'undelivered')
          AND o.campaign_id IS DISTINCT FROM :campaign_id
    ) m ON true"""

_LAST_SERVICE = """
    LEFT JOIN LATERAL (
        SELECT s.name FROM appointments a JOIN services s ON s.id = a.service_id
        WHERE a.client_id = c.id AND a.status = 'completed' ORDER BY a.starts_at DESC LIMIT 1
    ) ls ON true"""


def _facts(row: Any) -> RecipientFacts:
    return RecipientFacts(
        client_id=int(row["client_id"]),
        phone=row["phone_e164"],
        consent_state=row["consent_state"],
        sms_status=row["sms_status"],
        marketing_consent=row["marketing_consent"],
        timezone=row["timezone"],
        marketing_last_7d=int(row["week"] or 0),
        marketing_ever=int(row["ever"] or 0),
    )


# ------------------------------------------------------------------ rendering context
@dataclass
class SendContext:
    """What every recipient's message in one run shares (loaded once per run)."""

    clinic_id: int
    clinic_name: str
    clinic_phone: str
    clinic_tz: str
    sms_number: str
    policy: SendPolicy
    template: Template
    review_url: str = ""
    next_open_slot: str | None = None

    def values(self, name: str | None, last_service: str | None) -> dict[str, str | None]:
        return {
            "first_name": first_name(name),
            "clinic_name": self.clinic_name,
            "clinic_phone": self.clinic_phone,
            "next_open_slot": self.next_open_slot,
            "last_service": last_service,
            "review_url": self.review_url,
        }

    def body(self, name: str | None, last_service: str | None, decision: Decision) -> str:
        body = self.template.render(self.values(name, last_service))
        return with_footer(body, self.policy.footer) if decision.footer else body


def load_context(
    session: Session, clinic_id: int, template_source: str, segment: SegmentFilter, now: datetime
) -> SendContext:
    clinic = (
        session.execute(
            text(
                """SELECT c.name, c.phone, c.timezone, c.policies,
                      (SELECT e164 FROM clinic_phone_numbers n WHERE n.clinic_id = c.id ORDER BY id LIMIT 1) AS sms
               FROM clinics c WHERE c.id = :id"""
            ),
            {"id": clinic_id},
        )
        .mappings()
        .one()
    )
    policies = dict(clinic["policies"] or {})
    template = validate_template(template_source, CAMPAIGN_PLACEHOLDERS)
    context = SendContext(
        clinic_id=clinic_id,
        clinic_name=clinic["name"],
        clinic_phone=clinic["phone"],
        clinic_tz=clinic["timezone"],
        sms_number=clinic["sms"] or "",
        policy=SendPolicy.marketing_for(clinic["timezone"], policies),
        template=template,
        review_url=str(policies.get("review_url") or ""),
    )
    if "next_open_slot" in template.placeholders:
        context.next_open_slot = next_open_slot_label(session, clinic_id, now, segment.services_had)
    return context


def next_open_slot_label(
    session: Session, clinic_id: int, now: datetime, service_slugs: tuple[str, ...] = ()
) -> str | None:
    """The clinic's next bookable time (for the segment's service, else a consultation), as a patient reads it."""
    from worker.tool_executor import lead_time_minutes, parse_closed_dates, parse_hours

    clinic = session.execute(
        text("SELECT timezone, business_hours, holidays, policies FROM clinics WHERE id = :id"), {"id": clinic_id}
    ).one()
    service = session.execute(
        text(
            """SELECT id, duration_min, buffer_min FROM services WHERE clinic_id = :c AND active
               ORDER BY (slug = ANY(CAST(:slugs AS text[]))) DESC, (slug = 'consultation') DESC, id LIMIT 1"""
        ),
        {"c": clinic_id, "slugs": list(service_slugs)},
    ).one_or_none()
    if service is None:
        return None
    providers = session.execute(
        text(
            """SELECT p.id, p.name, p.working_hours FROM providers p
               JOIN provider_services ps ON ps.provider_id = p.id AND ps.service_id = :s
               WHERE p.clinic_id = :c AND p.active ORDER BY p.id"""
        ),
        {"c": clinic_id, "s": service.id},
    ).all()
    end = now + timedelta(days=14)
    busy: dict[int, list[Any]] = {p.id: [] for p in providers}
    for row in session.execute(
        text(
            """SELECT provider_id, starts_at, blocked_until FROM appointments
               WHERE clinic_id = :c AND status IN ('pending_deposit','booked','confirmed')
                 AND starts_at < :end AND blocked_until > :start"""
        ),
        {"c": clinic_id, "start": now, "end": end},
    ):
        if row.provider_id in busy:
            busy[row.provider_id].append(BusyInterval(row.starts_at, row.blocked_until))
    clinic_hours = parse_hours(clinic.business_hours)
    query = availability.SlotQuery(
        schedule=availability.ClinicSchedule(clinic.timezone, clinic_hours, parse_closed_dates(clinic.holidays)),
        service=availability.ServiceSpec(service.id, service.duration_min, service.buffer_min),
        providers=[
            availability.Provider(p.id, p.name, frozenset({service.id}), parse_hours(p.working_hours) or clinic_hours)
            for p in providers
        ],
        busy=busy,
        now=now,
        lead_time=timedelta(minutes=lead_time_minutes(dict(clinic.policies or {}))),
    )
    slots = availability.find_slots(query, now, end, limit=1)
    return when_label(slots[0].start, clinic.timezone) if slots else None


# ------------------------------------------------------------------ preview
@dataclass
class Preview:
    recipients: int  # would receive it (now or deferred to their morning)
    deferred: int  # of those, outside 08:00-21:00 local right now
    excluded: dict[str, int]
    samples: list[str]
    segments: int
    cost_usd: float
    segment: str
    matched: int  # clients the segment matched, before compliance

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "recipients": self.recipients,
            "deferred": self.deferred,
            "excluded": self.excluded,
            "samples": self.samples,
            "segments": self.segments,
            "cost_usd": self.cost_usd,
            "cost_per_segment_usd": COST_PER_SEGMENT_USD,
            "segment": self.segment,
        }


def preview(
    session: Session,
    clinic_id: int,
    template: str,
    segment: SegmentFilter,
    now: datetime,
    *,
    campaign_id: int | None = None,
    samples: int = 3,
) -> Preview:
    """Who would get what if it were sent now: nothing is written."""
    context = load_context(session, clinic_id, template, segment, now)
    seg_sql, params = segment_sql(segment)
    needs_last = "last_service" in context.template.placeholders
    rows = (
        session.execute(
            text(
                f"""SELECT c.id AS client_id, c.name, c.phone_e164, c.timezone, c.consent_state, c.sms_status,
                       c.marketing_consent, m.week, m.ever {", ls.name AS last_service" if needs_last else ""}
                FROM clients c {_MARKETING_COUNTS} {_LAST_SERVICE if needs_last else ""}
                WHERE c.id IN ({seg_sql}) ORDER BY c.id"""
            ),
            {
                **params,
                "clinic_id": clinic_id,
                "tz": context.clinic_tz,
                "now": now,
                "week_ago": now - timedelta(days=7),
                "campaign_id": campaign_id,
            },
        )
        .mappings()
        .all()
    )
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    bodies: list[str] = []
    deferred = 0
    for row in rows:
        decision = decide(_facts(row), context.policy, now)
        if not decision.send:
            excluded[decision.reason or "unknown"] = excluded.get(decision.reason or "unknown", 0) + 1
            continue
        deferred += decision.deferred
        bodies.append(context.body(row["name"], row.get("last_service"), decision))
    segments = sum(count_segments(b).segments for b in bodies)
    return Preview(
        recipients=len(bodies),
        deferred=deferred,
        excluded=excluded,
        samples=bodies[:samples],
        segments=segments,
        cost_usd=round(segments * COST_PER_SEGMENT_USD, 4),
        segment=segment.describe(),
        matched=len(rows),
    )


# ------------------------------------------------------------------ state changes
def schedule_campaign(session: Session, clinic_id: int, campaign_id: int, at: datetime, now: datetime) -> str:
    """Schedule for ``at`` (or send now when ``at`` is not in the future).  Returns the new status."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status not in ("draft", "scheduled"):
        raise CampaignError(
            f"campaign {campaign_id} is {campaign.status}; only a draft or scheduled one can be scheduled"
        )
    status = "sending" if at <= now else "scheduled"
    session.execute(
        text("UPDATE campaigns SET status = :status, scheduled_at = :at WHERE id = :id"),
        {"status": status, "at": at, "id": campaign_id},
    )
    return status


def pause_campaign(session: Session, clinic_id: int, campaign_id: int) -> int:
    """Stop sending now: queued messages not yet claimed by a sender are withdrawn (their recipients go back to
    pending and are re-decided on resume).  Returns how many were withdrawn."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status not in ("sending", "scheduled"):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a sending or scheduled one can pause")
    session.execute(text("UPDATE campaigns SET status = 'paused' WHERE id = :id"), {"id": campaign_id})
    return _withdraw(session, clinic_id, campaign_id, PAUSED_MARK, "pending")


def resume_campaign(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> str:
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status != "paused":
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}, not paused")
    status = (
        "scheduled" if campaign.scheduled_at and campaign.scheduled_at > now and not campaign.started_at else "sending"
    )
    session.execute(text("UPDATE campaigns SET status = :s WHERE id = :id"), {"s": status, "id": campaign_id})
    return status


def cancel_campaign(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> int:
    """Cancel for good: nothing more is sent.  Returns recipients who will now get nothing."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status in ("completed", "cancelled"):
        raise CampaignError(f"campaign {campaign_id} is already {campaign.status}")
    session.execute(
        text("UPDATE campaigns SET status = 'cancelled', completed_at = :now WHERE id = :id"),
        {"id": campaign_id, "now": now},
    )
    withdrawn = _withdraw(session, clinic_id, campaign_id, CANCELLED_MARK, "cancelled")
    pending = session.execute(
        text("UPDATE campaign_recipients SET status = 'cancelled' WHERE campaign_id = :id AND status = 'pending'"),
        {"id": campaign_id},
    ).rowcount  # type: ignore[attr-defined]
    return int(pending) + withdrawn


def _withdraw(session: Session, clinic_id: int, campaign_id: int, mark: str, recipient_status: str) -> int:
    """Queued outbox rows of the campaign → cancelled (a sender that already claimed one finishes it: the claim
    holds the row lock, and this UPDATE re-checks ``status = 'queued'`` after waiting for it)."""
    return int(
        session.execute(
            text(
                """WITH withdrawn AS (
                       UPDATE outbox SET status = 'cancelled', error_message = :mark
                       WHERE clinic_id = :clinic_id AND campaign_id = :id AND status = 'queued'
                       RETURNING id)
                   UPDATE campaign_recipients SET status = CAST(:rstatus AS text),
                          outbox_id = CASE WHEN CAST(:rstatus AS text) = 'pending' THEN NULL ELSE outbox_id END
                   WHERE campaign_id = :id AND outbox_id IN (SELECT id FROM withdrawn)"""
            ),
            {"clinic_id": clinic_id, "id": campaign_id, "mark": mark, "rstatus": recipient_status},
        ).rowcount  # type: ignore[attr-defined]
    )


def start_due_campaigns(session: Session, clinic_id: int, now: datetime) -> list[int]:
    """Scheduled campaigns whose time came become ``sending``; returns every campaign with work to do."""
    session.execute(
        text(
            """UPDATE campaigns SET status = 'sending'
               WHERE clinic_id = :clinic_id AND status = 'scheduled' AND scheduled_at <= :now"""
        ),
        {"clinic_id": clinic_id, "now": now},
    )
    return [
        int(r)
        for r in session.execute(
            text(
                """SELECT c.id FROM campaigns c
                   WHERE c.clinic_id = :clinic_id AND c.status = 'sending'
                     AND (c.started_at IS NULL OR EXISTS (
                          SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'pending'
                            AND (r.send_after IS NULL OR r.send_after <= :now))
                          OR NOT EXISTS (
                          SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'pending'))
                   ORDER BY c.id"""
            ),
            {"clinic_id": clinic_id, "now": now},
        ).scalars()
    ]


# ------------------------------------------------------------------ fan-out
def materialise_recipients(
    database: Database, clinic_id: int, campaign: Campaign, now: datetime, batch: int = MATERIALISE_BATCH
) -> int:
    """Segment → ``campaign_recipients`` in keyset batches (idempotent); marks the list complete."""
    seg_sql, params = segment_sql(campaign.segment)
    with database.tenant_scope(clinic_id) as session:
        tz = session.execute(text("SELECT timezone FROM clinics WHERE id = :id"), {"id": clinic_id}).scalar_one()
    after = 0
    total = 0
    while True:
        with database.tenant_scope(clinic_id) as session:
            ids = (
                session.execute(
                    text(f"SELECT id FROM ({seg_sql}) seg WHERE id > :after ORDER BY id LIMIT :batch"),
                    {**params, "clinic_id": clinic_id, "tz": tz, "now": now, "after": after, "batch": batch},
                )
                .scalars()
                .all()
            )
            if not ids:
                session.execute(
                    text("UPDATE campaigns SET started_at = coalesce(started_at, :now) WHERE id = :id"),
                    {"id": campaign.id, "now": now},
                )
                return total
            total += session.execute(
                text(
                    """INSERT INTO campaign_recipients (clinic_id, campaign_id, client_id)
                       SELECT :clinic_id, :campaign_id, unnest(CAST(:ids AS bigint[]))
                       ON CONFLICT (campaign_id, client_id) DO NOTHING"""
                ),
                {"clinic_id": clinic_id, "campaign_id": campaign.id, "ids": list(ids)},
            ).rowcount  # type: ignore[attr-defined]
            after = int(ids[-1])


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
    needs_last = "last_service" in context.template.placeholders
    with database.tenant_scope(clinic_id) as session:
        # FOR SHARE: pause/cancel (FOR UPDATE on the campaign) waits for this batch, and the batch sees their verdict.
        status = session.execute(
            text("SELECT status FROM campaigns WHERE id = :id FOR SHARE"), {"id": campaign_id}
        ).scalar_one()
        if status != "sending":
            result.stopped = True
            return result
        rows = (
            session.execute(
                text(
                    # Pick and lock the batch first, then look up facts for those rows only.
                    f"""WITH picked AS (
                        SELECT r.id, r.client_id FROM campaign_recipients r
                        WHERE r.campaign_id = :campaign_id AND r.status = 'pending'
                          AND (r.send_after IS NULL OR r.send_after <= :now)
                        ORDER BY r.id LIMIT :batch FOR UPDATE SKIP LOCKED)
                    SELECT p.id AS recipient_id, c.id AS client_id, c.name, c.phone_e164, c.timezone, c.consent_state,
                           c.sms_status, c.marketing_consent, m.week, m.ever {", ls.name AS last_service" if needs_last else ""}
                    FROM picked p JOIN clients c ON c.id = p.client_id
                    {_MARKETING_COUNTS} {_LAST_SERVICE if needs_last else ""}
                    ORDER BY p.id"""
                ),
                {"campaign_id": campaign_id, "now": now, "week_ago": now - timedelta(days=7), "batch": batch_size},
            )
            .mappings()
            .all()
        )
        result.claimed = len(rows)
        if not rows:
            return result
        updates: dict[str, list[Any]] = {"id": [], "status": [], "reason": [], "send_after": []}
        sends: dict[str, list[Any]] = {k: [] for k in ("client", "body", "footer", "segs", "enc")}
        recipient_of: dict[int, int] = {}
        for row in rows:
            decision = decide(_facts(row), context.policy, now)
            rid = int(row["recipient_id"])
            if not decision.send:
                reason = decision.reason or "unknown"
                result.excluded[reason] = result.excluded.get(reason, 0) + 1
                _add(updates, rid, "excluded", reason, None)
                continue
            if decision.deferred:
                result.deferred += 1
                _add(updates, rid, "pending", None, decision.send_at)
                continue
            body = context.body(row["name"], row.get("last_service"), decision)
            segments, encoding = _segments(body)
            client_id = int(row["client_id"])
            recipient_of[client_id] = rid
            sends["client"].append(client_id)
            sends["body"].append(body)
            sends["footer"].append(decision.footer)
            sends["segs"].append(segments)
            sends["enc"].append(encoding)
        outbox_of: dict[int, int] = {}
        if sends["client"]:
            inserted = session.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, channel, kind, priority, to_address, from_address,
                                           body, meta, dedupe_key, campaign_id, segments, encoding)
                       SELECT :clinic_id, u.client_id, 'sms', 'campaign', :priority, c.phone_e164, :from_address,
                              u.body, jsonb_build_object('campaign_id', :campaign_id, 'marketing', true,
                                                         'footer', u.footer),
                              'campaign:' || :campaign_id || ':client:' || u.client_id, :campaign_id, u.segments,
                              u.encoding
                       FROM unnest(CAST(:clients AS bigint[]), CAST(:bodies AS text[]), CAST(:footers AS boolean[]),
                                   CAST(:segs AS int[]), CAST(:encs AS text[]))
                            AS u(client_id, body, footer, segments, encoding)
                       JOIN clients c ON c.id = u.client_id
                       ON CONFLICT (clinic_id, dedupe_key) DO UPDATE
                           SET status = 'queued', body = EXCLUDED.body, meta = EXCLUDED.meta, error_message = '',
                               segments = EXCLUDED.segments, encoding = EXCLUDED.encoding
                           WHERE outbox.status = 'cancelled' AND outbox.error_message = :paused
                       RETURNING id, client_id"""
                ),
                {
                    "clinic_id": clinic_id,
                    "priority": CAMPAIGN_PRIORITY,
                    "from_address": context.sms_number,
                    "campaign_id": campaign_id,
                    "clients": sends["client"],
                    "bodies": sends["body"],
                    "footers": sends["footer"],
                    "segs": sends["segs"],
                    "encs": sends["enc"],
                    "paused": PAUSED_MARK,
                },
            ).all()
            outbox_of = {int(client): int(oid) for oid, client in inserted}
            missing = [c for c in sends["client"] if c not in outbox_of]
            if missing:  # a row for this person exists already (sent before a crash): link it, never send twice
                for oid, client in session.execute(
                    text("SELECT id, client_id FROM outbox WHERE clinic_id = :c AND dedupe_key = ANY(:keys)"),
                    {"c": clinic_id, "keys": [f"campaign:{campaign_id}:client:{m}" for m in missing]},
                ):
                    outbox_of[int(client)] = -int(oid)
        out_ids: list[int | None] = [None] * len(updates["id"])
        for client_id, rid in recipient_of.items():
            oid = outbox_of.get(client_id)
            _add(updates, rid, "queued", None, None)
            out_ids.append(abs(oid) if oid else None)
            if oid and oid > 0:
                result.outbox_ids.append(oid)
        session.execute(
            text(
                """UPDATE campaign_recipients r
                   SET status = u.status, exclusion_reason = u.reason, send_after = u.send_after, outbox_id = u.oid
                   FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]),
                               CAST(:afters AS timestamptz[]), CAST(:oids AS bigint[]))
                        AS u(id, status, reason, send_after, oid)
                   WHERE r.id = u.id"""
            ),
            {
                "ids": updates["id"],
                "statuses": updates["status"],
                "reasons": updates["reason"],
                "afters": updates["send_after"],
                "oids": out_ids,
            },
        )
        result.queued = len(result.outbox_ids)
    return result


_GSM7_BASIC_SET = frozenset(GSM7_BASIC)


def _segments(body: str) -> tuple[int, str]:
    """``count_segments`` with a C-speed fast path for the common case (basic GSM-7 characters only)."""
    if _GSM7_BASIC_SET.issuperset(body):
        n = len(body)
        return (1 if n <= 160 else -(-n // 153)), "GSM-7"
    info = count_segments(body)
    return info.segments, info.encoding


def _add(updates: dict[str, list[Any]], rid: int, status: str, reason: str | None, send_after: datetime | None) -> None:
    updates["id"].append(rid)
    updates["status"].append(status)
    updates["reason"].append(reason)
    updates["send_after"].append(send_after)


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
        return int(
            session.execute(
                # Deferred rows (not_before: the recipient's window closed at send time) wait for the morning
                # and hold nothing back.
                text(
                    """SELECT count(*) FROM outbox WHERE clinic_id = :c AND campaign_id = :id
                         AND status IN ('queued', 'sending')
                         AND (not_before IS NULL OR not_before <= coalesce(CAST(:now AS timestamptz), now()))"""
                ),
                {"c": clinic_id, "id": campaign_id, "now": now},
            ).scalar_one()
        )


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
        total = int(
            session.execute(
                text("SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id"), {"id": campaign_id}
            ).scalar_one()
        )
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
        due, pending = session.execute(
            text(
                """SELECT count(*) FILTER (WHERE send_after IS NULL OR send_after <= :now), count(*)
                   FROM campaign_recipients WHERE campaign_id = :id AND status = 'pending'"""
            ),
            {"id": campaign_id, "now": now},
        ).one()
        if pending == 0:
            done = session.execute(
                text(
                    """UPDATE campaigns SET status = 'completed', completed_at = :now
                       WHERE id = :id AND status = 'sending' RETURNING status"""
                ),
                {"id": campaign_id, "now": now},
            ).scalar_one_or_none()
            if done:
                return "completed", False
        status = session.execute(text("SELECT status FROM campaigns WHERE id = :id"), {"id": campaign_id}).scalar_one()
        return status, bool(due) and status == "sending"


# ------------------------------------------------------------------ pacing
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


def campaign_status(database: Database, clinic_id: int, campaign_id: int) -> str:
    with database.tenant_scope(clinic_id) as session:
        return str(
            session.execute(text("SELECT status FROM campaigns WHERE id = :id"), {"id": campaign_id}).scalar_one()
        )


# ------------------------------------------------------------------ report
def report(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> dict[str, Any]:
    """Where every recipient stands; the ``breakdown`` partitions ``recipients`` exactly.

    Engagement counts are among recipients a message was sent to: ``opted_out``
    (opted out after it), ``replied`` (texted back within 7 days), ``booked``
    (booked a visit within 14 days, not since cancelled).
    """
    campaign = get_campaign(session, clinic_id, campaign_id)
    rows = session.execute(
        text(
            """SELECT r.status, r.exclusion_reason, (r.send_after > :now) AS later, o.status AS outbox_status,
                      count(*) AS n
               FROM campaign_recipients r LEFT JOIN outbox o ON o.id = r.outbox_id
               WHERE r.campaign_id = :id GROUP BY 1, 2, 3, 4"""
        ),
        {"id": campaign_id, "now": now},
    ).all()
    breakdown = {
        k: 0
        for k in (
            "pending",
            "deferred",
            "queued",
            "sent",
            "delivered",
            "failed",
            "suppressed",
            "withdrawn",
            "cancelled",
            "excluded",
        )
    }
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    for status, reason, later, outbox_status, n in rows:
        n = int(n)
        if status == "excluded":
            breakdown["excluded"] += n
            excluded[reason or "unknown"] = excluded.get(reason or "unknown", 0) + n
        elif status == "pending":
            breakdown["deferred" if later else "pending"] += n
        elif status == "cancelled" and outbox_status in (None, "cancelled"):
            breakdown["cancelled"] += n
        elif outbox_status in ("queued", "sending", "unknown"):
            breakdown["queued"] += n
        elif outbox_status == "sent":
            breakdown["sent"] += n
        elif outbox_status == "delivered":
            breakdown["delivered"] += n
        elif outbox_status in ("failed", "undelivered"):
            breakdown["failed"] += n
        elif outbox_status == "suppressed":
            breakdown["suppressed"] += n
        else:
            breakdown["withdrawn"] += n
    engagement = (
        session.execute(
            text(
                """WITH sent AS (
                   SELECT o.client_id, o.sent_at FROM campaign_recipients r JOIN outbox o ON o.id = r.outbox_id
                   WHERE r.campaign_id = :id AND o.sent_at IS NOT NULL AND o.status IN ('sent', 'delivered'))
               SELECT
                 count(*) FILTER (WHERE EXISTS (
                     SELECT 1 FROM consent_events e WHERE e.client_id = s.client_id AND e.kind = 'opt_out'
                       AND e.created_at >= s.sent_at)) AS opted_out,
                 count(*) FILTER (WHERE EXISTS (
                     SELECT 1 FROM messages m JOIN conversations v ON v.id = m.conversation_id
                     WHERE v.client_id = s.client_id AND m.direction = 'inbound'
                       AND m.created_at >= s.sent_at AND m.created_at < s.sent_at + :reply_window)) AS replied,
                 count(*) FILTER (WHERE EXISTS (
                     SELECT 1 FROM appointments a WHERE a.client_id = s.client_id AND a.kind = 'appointment'
                       AND a.status NOT IN ('cancelled', 'expired')
                       AND a.created_at >= s.sent_at AND a.created_at < s.sent_at + :booking_window)) AS booked
               FROM sent s"""
            ),
            {"id": campaign_id, "reply_window": REPLY_WINDOW, "booking_window": BOOKING_WINDOW},
        )
        .mappings()
        .one()
    )
    segments = session.execute(
        text(
            """SELECT coalesce(sum(o.segments), 0) FROM campaign_recipients r JOIN outbox o ON o.id = r.outbox_id
               WHERE r.campaign_id = :id AND o.status IN ('sent', 'delivered')"""
        ),
        {"id": campaign_id},
    ).scalar_one()
    return {
        "campaign_id": campaign_id,
        "name": campaign.name,
        "status": campaign.status,
        "recipients": sum(breakdown.values()),
        "breakdown": breakdown,
        "excluded": excluded,
        "sent": breakdown["sent"] + breakdown["delivered"],
        "delivered": breakdown["delivered"],
        "failed": breakdown["failed"],
        "opted_out": int(engagement["opted_out"]),
        "replied": int(engagement["replied"]),
        "booked": int(engagement["booked"]),
        "segments_sent": int(segments),
        "cost_usd": round(int(segments) * COST_PER_SEGMENT_USD, 4),
    }


# ------------------------------------------------------------------ batched sending
SEND_CHUNK_UNCAPPED = 50


@dataclass
class BatchSend:
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0  # the recipient's window closed before the send: back to the queue with not_before
    lost: int = 0  # claimed rows not sent: the claim lapsed (swept) before their turn came; another worker has them
    retry_later: list[tuple[int, int]] = field(default_factory=list)  # (outbox id, delay ms) for the single path
    stopped: str | None = None  # 'paused' / 'cancelled' when the campaign stopped mid-batch


def send_batch(
    container: Any,
    limiter: Any,
    clinic_id: int,
    campaign_id: int,
    outbox_ids: list[int],
    *,
    cap_per_s: float | None = None,
    pacer: CampaignPacer | None = None,
) -> BatchSend:
    """Send committed campaign rows with the same guarantees as ``worker.outbox.send_outbox_message`` — a claim
    (``queued → sending``) committed before the provider call and re-verified immediately before it, the send
    decision made again at claim time (``worker.outbox.send_decision``: consent, number, the recipient's
    08:00–21:00) and its window once more right before each provider call, the shared rate limiter (bulk),
    ``unknown`` on an unrecorded outcome (the sweeper reconciles it with the provider before any re-send) — but
    claiming and recording a chunk of rows per transaction instead of two transactions per message.  The
    campaign's status is checked before every chunk: a pause stops sending within a batch, and rows claimed but
    not yet sent go back to the pause's withdrawn set.  A row whose recipient's window closed is deferred
    (``not_before`` = their next 08:00; the sweeper hands it to the single-row sender then), never dropped and
    never sent at night.

    A chunk takes as long as its provider calls: with a slow provider, longer than the sweeper's deadline for
    claimed rows.  So before each call the chunk's claim is checked (``worker.outbox.claim_is_fresh``); once it
    is no longer fresh, one round trip records what the chunk sent so far and renews the claim on the rest
    (``claim_token`` fenced).  A row whose claim lapsed meanwhile — swept to ``unknown``, maybe re-claimed,
    reconciled and sent by another worker — is skipped, never sent a second time.
    """
    from domain.ports import SmsSendError
    from worker.outbox import Claim, apply_delivery_error, claim_is_fresh, send_decision, sms_message_for

    result = BatchSend()
    # Capped: about a tenth of a second of sends per claim, so a pause stops within that.
    chunk = max(1, min(SEND_CHUNK_UNCAPPED, int(cap_per_s // 10))) if cap_per_s else SEND_CHUNK_UNCAPPED
    ids = sorted(set(outbox_ids))
    for start in range(0, len(ids), chunk):
        claim = Claim.start()
        rows = _claim_chunk(container, clinic_id, campaign_id, ids[start : start + chunk], claim, result)
        if result.stopped:
            return result
        marks: list[tuple[int, str, int, datetime]] = []
        failures: list[tuple[dict[str, Any], SmsSendError]] = []
        lost: set[int] = set()
        for index, row in enumerate(rows):
            outbox_id = int(row["id"])
            if outbox_id in lost:
                continue
            message = sms_message_for(container, clinic_id, row)
            wait_ms = 0
            if pacer is not None and cap_per_s and not pacer.wait(campaign_id, cap_per_s):
                wait_ms = 1000
            wait_ms = wait_ms or limiter.acquire(message.from_, bulk=True)
            if wait_ms:  # out of tokens: hand the rest of this chunk and batch to the delayed single-row path
                rest = [int(r["id"]) for r in rows[index:] if int(r["id"]) not in lost]
                _release(container, clinic_id, rest, claim)
                result.retry_later += [(i, wait_ms) for i in rest + ids[start + chunk :]]
                _record(container, clinic_id, marks, failures, apply_delivery_error, result, claim)
                return result
            now = container.clock.now()
            decision = send_decision(container, clinic_id, row, row["facts"], now)
            if not decision.send_now:  # the window closed while the chunk was sending (pacing, a slow provider)
                _defer(container, clinic_id, outbox_id, decision.send_at or now, claim)
                result.deferred += 1
                continue
            if not claim_is_fresh(claim, container.settings):
                # Immediately before this call: record what the chunk sent so far and renew the claim on the rest.
                rest = [int(r["id"]) for r in rows[index:] if int(r["id"]) not in lost]
                held = _record(container, clinic_id, marks, failures, apply_delivery_error, result, claim, renew=rest)
                marks, failures = [], []
                if set(rest) - held:
                    lost |= set(rest) - held
                    _count_lost(clinic_id, campaign_id, len(set(rest) - held), result)
                if outbox_id in lost:
                    continue
            try:
                sent = container.sms.send(message)
            except SmsSendError as exc:
                if exc.retryable:
                    _set_unknown(container, clinic_id, outbox_id, claim)
                    result.unknown += 1
                else:
                    failures.append((row, exc))
                continue
            marks.append((outbox_id, sent.provider_message_id, sent.segments, datetime.now(tz=UTC)))
        _record(container, clinic_id, marks, failures, apply_delivery_error, result, claim)
    return result


def _count_lost(clinic_id: int, campaign_id: int, lost: int, result: BatchSend) -> None:
    from medspa import metrics

    result.lost += lost
    metrics.lost_claims.inc(lost)
    log.warning(
        "campaign rows' claim lapsed before their provider call; another worker has them",
        extra={"clinic_id": clinic_id, "campaign_id": campaign_id, "rows": lost},
    )


def _claim_chunk(
    container: Any, clinic_id: int, campaign_id: int, ids: list[int], claim: Any, result: BatchSend
) -> list[dict[str, Any]]:
    """Decide every queued row of the chunk again at send time and claim the ones that may go now (under
    ``claim``'s token); record the suppressed ones, give the ones whose window is closed their ``not_before``.
    Rows come back with ``facts``."""
    from worker.outbox import recipient_facts, send_decision, suppression_text

    now = container.clock.now()
    with container.database.tenant_scope(clinic_id) as session:
        status = session.execute(
            text("SELECT status FROM campaigns WHERE id = :id FOR SHARE"), {"id": campaign_id}
        ).scalar_one()
        if status in ("paused", "cancelled"):
            result.stopped = status
            return []
        candidates = (
            session.execute(
                text(
                    """SELECT o.id, o.kind, o.meta, o.to_address, o.from_address, o.body, o.client_id,
                          c.consent_state, c.marketing_consent, c.sms_status, c.timezone
                   FROM outbox o LEFT JOIN clients c ON c.id = o.client_id
                   WHERE o.id = ANY(:ids) AND o.clinic_id = :clinic_id AND o.status = 'queued'
                     AND (o.not_before IS NULL OR o.not_before <= :now)
                   ORDER BY o.id FOR UPDATE OF o"""
                ),
                {"ids": ids, "clinic_id": clinic_id, "now": now},
            )
            .mappings()
            .all()
        )
        rows: list[dict[str, Any]] = []
        suppressed: dict[int, str] = {}
        deferred: dict[int, datetime] = {}
        for candidate in candidates:
            facts = recipient_facts(candidate)
            decision = send_decision(container, clinic_id, candidate, facts, now)
            if not decision.send:
                suppressed[int(candidate["id"])] = suppression_text(decision, candidate)
            elif decision.deferred and decision.send_at is not None:
                deferred[int(candidate["id"])] = decision.send_at
            else:
                rows.append({**candidate, "facts": facts})
        if suppressed:
            session.execute(
                text(
                    """UPDATE outbox o SET status = 'suppressed', error_message = u.why
                       FROM unnest(CAST(:ids AS bigint[]), CAST(:whys AS text[])) AS u(id, why) WHERE o.id = u.id"""
                ),
                {"ids": list(suppressed), "whys": list(suppressed.values())},
            )
        if deferred:
            session.execute(
                text(
                    """UPDATE outbox o SET not_before = u.at
                       FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS u(id, at)
                       WHERE o.id = u.id"""
                ),
                {"ids": list(deferred), "ats": list(deferred.values())},
            )
        if rows:
            session.execute(
                text(
                    """UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_at = now(),
                          claim_token = :token
                       WHERE id = ANY(:ids) AND status = 'queued'"""
                ),
                {"ids": [r["id"] for r in rows], "token": claim.token},
            )
        result.suppressed += len(suppressed)
        result.deferred += len(deferred)
    return rows


def _defer(container: Any, clinic_id: int, outbox_id: int, until: datetime, claim: Any) -> None:
    """A claimed row that must not go out now after all: back to the queue until ``until`` (attempt undone)."""
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                """UPDATE outbox SET status = 'queued', attempts = attempts - 1, not_before = :until
                   WHERE id = :id AND status = 'sending' AND claim_token = :token"""
            ),
            {"id": outbox_id, "until": until, "token": claim.token},
        )


def _release(container: Any, clinic_id: int, ids: list[int], claim: Any) -> None:
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(
            text("""UPDATE outbox SET status = 'queued', attempts = attempts - 1
                    WHERE id = ANY(:ids) AND status = 'sending' AND claim_token = :token"""),
            {"ids": ids, "token": claim.token},
        )


def _set_unknown(container: Any, clinic_id: int, outbox_id: int, claim: Any) -> None:
    with container.database.tenant_scope(clinic_id) as session:
        session.execute(
            text("UPDATE outbox SET status = 'unknown' WHERE id = :id AND status = 'sending' AND claim_token = :token"),
            {"id": outbox_id, "token": claim.token},
        )


def _record(
    container: Any,
    clinic_id: int,
    marks: list[tuple[int, str, int, datetime]],
    failures: list[Any],
    apply_delivery_error: Any,
    result: BatchSend,
    claim: Any,
    *,
    renew: list[int] | None = None,
) -> set[int]:
    """Record the chunk's outcomes so far; with ``renew``, also re-verify and extend the claim on those rows (same
    transaction).  Returns the ``renew`` rows still held.  "Sent" is recorded whoever holds the row now (the
    provider has it); a failure only under this worker's claim."""
    if not marks and not failures and not renew:
        return set()
    from worker.outbox import renew_claims

    started = _time.monotonic()
    with container.database.tenant_scope(clinic_id) as session:
        if marks:
            session.execute(
                text(
                    """UPDATE outbox o SET status = 'sent', sent_at = u.sent_at,
                              provider_message_id = coalesce(u.pid, o.provider_message_id),
                              segments = coalesce(u.segments, o.segments)
                       FROM unnest(CAST(:ids AS bigint[]), CAST(:pids AS text[]), CAST(:segs AS int[]),
                                   CAST(:times AS timestamptz[])) AS u(id, pid, segments, sent_at)
                       WHERE o.id = u.id AND o.status IN ('sending', 'unknown')"""
                ),
                {
                    "ids": [m[0] for m in marks],
                    "pids": [m[1] for m in marks],
                    "segs": [m[2] for m in marks],
                    "times": [m[3] for m in marks],
                },
            )
            result.sent += len(marks)
        for row, exc in failures:
            session.execute(
                text("""UPDATE outbox SET status = 'failed', error_code = :code, error_message = :msg
                        WHERE id = :id AND status = 'sending' AND claim_token = :token"""),
                {"id": row["id"], "code": exc.code, "msg": str(exc)[:500], "token": claim.token},
            )
            apply_delivery_error(session, clinic_id, row.get("client_id"), row["to_address"], exc.code)
            result.failed += 1
        held = renew_claims(session, claim, renew) if renew else set()
    if renew:
        claim.renewed_at = started
    return held
