"""Who a campaign is for: the segment (``domain.audience.SegmentFilter``) as SQL, what the planners read about
each recipient, and the preview — who would get what if it were sent now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import VISITED_STATUSES
from domain.audience import EXCLUSION_REASONS, SegmentFilter, decide
from domain.templates import COST_PER_SEGMENT_USD, Template
from worker.appointments.store import has_upcoming_visit
from worker.campaigns.content import load_context
from worker.outbox.planning import RECIPIENT_COLUMNS, marketing_counts, planned_recipient
from worker.outbox.writes import segment_fields

_VISITED = sql_list(VISITED_STATUSES)
# The service of the client's most recent completed visit (the ``{last_service}`` placeholder).
_LAST_SERVICE = f"""
    LEFT JOIN LATERAL (
        SELECT s.name FROM appointments a JOIN services s ON s.id = a.service_id
        WHERE a.client_id = c.id AND a.status IN {_VISITED} ORDER BY a.starts_at DESC LIMIT 1
    ) ls ON true"""


def segment_sql(segment: SegmentFilter) -> tuple[str, dict[str, Any]]:
    """``SELECT c.id`` of the clinic's clients matching ``segment``.

    Binds ``:clinic_id``, ``:tz`` (clinic zone: visit dates are local dates) and
    ``:now`` (for upcoming appointments), plus the filter's own values.  Visits
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
        head = f"""WITH visits AS (
                    SELECT a.client_id, max(a.starts_at) AS last_visit,
                           coalesce(sum(coalesce(a.amount_charged_cents, s.price_cents)), 0) AS spend,
                           array_agg(DISTINCT s.slug::text) FILTER (WHERE s.slug IS NOT NULL) AS slugs
                    FROM appointments a LEFT JOIN services s ON s.id = a.service_id
                    WHERE a.clinic_id = :clinic_id AND a.status IN {_VISITED} AND a.client_id IS NOT NULL
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
        # Upcoming as the agent and the automations mean it (a visit under way counts).
        exists = has_upcoming_visit("c.id", ":now")
        where.append(exists if segment.has_future_appointment else f"NOT {exists}")
    sql = f"{head}SELECT c.id FROM clients c{join} WHERE " + " AND ".join(where)
    return sql, params


def audience_reads(template: Template) -> tuple[str, str]:
    """(columns, joins) that read a recipient for a campaign's decision and rendering (``c``: the clients table):
    ``client_id``, ``name``, the consent columns and marketing counts (binds ``:week_ago``, ``:campaign_id``),
    and ``last_service`` when the template uses it."""
    needs_last = "last_service" in template.placeholders
    columns = f"c.id AS client_id, c.name, {RECIPIENT_COLUMNS}, m.week, m.ever"
    joins = marketing_counts("c.id", except_campaign=True)
    if needs_last:
        columns += ", ls.name AS last_service"
        joins += _LAST_SERVICE
    return columns, joins


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
    columns, joins = audience_reads(context.template)
    rows = (
        session.execute(
            text(f"SELECT {columns} FROM clients c {joins} WHERE c.id IN ({seg_sql}) ORDER BY c.id"),
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
        decision = decide(planned_recipient(row), context.policy, now)
        if not decision.send:
            excluded[decision.reason or "unknown"] = excluded.get(decision.reason or "unknown", 0) + 1
            continue
        deferred += decision.deferred
        bodies.append(context.body(row["name"], row.get("last_service"), decision))
    segments = sum(segment_fields("sms", b)[0] for b in bodies)
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
