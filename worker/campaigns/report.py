"""Where every recipient of a campaign stands, and what the campaign brought (opt-outs, replies, bookings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import APPOINTMENT, RELEASED_STATUSES
from domain.audience import EXCLUSION_REASONS
from domain.outbox import CANCELLED, DELIVERED, FAILED, SENT, SUPPRESSED, UNDELIVERED, UNSENT, WENT_OUT
from domain.templates import COST_PER_SEGMENT_USD
from worker.campaigns.lifecycle import get_campaign

REPLY_WINDOW = timedelta(days=7)
BOOKING_WINDOW = timedelta(days=14)
# The report's partition of recipients, in the order it is shown.
STATES = (
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

_BY_STATE = """
SELECT r.status, r.exclusion_reason, (r.send_after > :now) AS later, o.status AS outbox_status, count(*) AS n
FROM campaign_recipients r LEFT JOIN outbox o ON o.id = r.outbox_id
WHERE r.campaign_id = :id GROUP BY 1, 2, 3, 4
"""
_ENGAGEMENT = f"""
WITH sent AS (
    SELECT o.client_id, o.sent_at FROM campaign_recipients r JOIN outbox o ON o.id = r.outbox_id
    WHERE r.campaign_id = :id AND o.sent_at IS NOT NULL AND o.status IN {sql_list(WENT_OUT)})
SELECT
  count(*) FILTER (WHERE EXISTS (
      SELECT 1 FROM consent_events e WHERE e.client_id = s.client_id AND e.kind = 'opt_out'
        AND e.created_at >= s.sent_at)) AS opted_out,
  count(*) FILTER (WHERE EXISTS (
      SELECT 1 FROM messages m JOIN conversations v ON v.id = m.conversation_id
      WHERE v.client_id = s.client_id AND m.direction = 'inbound'
        AND m.created_at >= s.sent_at AND m.created_at < s.sent_at + :reply_window)) AS replied,
  count(*) FILTER (WHERE EXISTS (
      SELECT 1 FROM appointments a WHERE a.client_id = s.client_id AND a.kind = '{APPOINTMENT}'
        AND a.status NOT IN {sql_list(RELEASED_STATUSES)}
        AND a.created_at >= s.sent_at AND a.created_at < s.sent_at + :booking_window)) AS booked
FROM sent s
"""
_SEGMENTS_SENT = f"""
SELECT coalesce(sum(o.segments), 0) FROM campaign_recipients r JOIN outbox o ON o.id = r.outbox_id
WHERE r.campaign_id = :id AND o.status IN {sql_list(WENT_OUT)}
"""


def recipient_state(status: str, later: bool | None, outbox_status: str | None) -> str:
    """Where a recipient stands (one of ``STATES``), from their ``campaign_recipients`` status, whether they
    wait for a later moment, and their outbox row's status."""
    if status == "excluded":
        return "excluded"
    if status == "pending":
        return "deferred" if later else "pending"
    if status == "cancelled" and outbox_status in (None, CANCELLED):
        return "cancelled"
    if outbox_status in UNSENT:
        return "queued"
    if outbox_status in (SENT, DELIVERED, SUPPRESSED):
        return str(outbox_status)
    if outbox_status in (FAILED, UNDELIVERED):
        return "failed"
    return "withdrawn"


@dataclass(frozen=True)
class CampaignReport:
    """``breakdown`` partitions ``recipients`` exactly.  Engagement counts are among recipients a message was
    sent to: ``opted_out`` (opted out after it), ``replied`` (texted back within 7 days), ``booked`` (booked a
    visit within 14 days and has not given the slot back since: cancelled, late-cancelled or expired unpaid)."""

    campaign_id: int
    name: str
    status: str
    recipients: int
    breakdown: dict[str, int]
    excluded: dict[str, int]
    sent: int
    delivered: int
    failed: int
    opted_out: int
    replied: int
    booked: int
    segments_sent: int
    cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def report(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> CampaignReport:
    campaign = get_campaign(session, clinic_id, campaign_id)
    breakdown = dict.fromkeys(STATES, 0)
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    for status, reason, later, outbox_status, n in session.execute(
        text(_BY_STATE), {"id": campaign_id, "now": now}
    ).all():
        breakdown[recipient_state(status, later, outbox_status)] += int(n)
        if status == "excluded":
            excluded[reason or "unknown"] = excluded.get(reason or "unknown", 0) + int(n)
    engagement = (
        session.execute(
            text(_ENGAGEMENT), {"id": campaign_id, "reply_window": REPLY_WINDOW, "booking_window": BOOKING_WINDOW}
        )
        .mappings()
        .one()
    )
    segments = int(session.execute(text(_SEGMENTS_SENT), {"id": campaign_id}).scalar_one())
    return CampaignReport(
        campaign_id=campaign_id,
        name=campaign.name,
        status=campaign.status,
        recipients=sum(breakdown.values()),
        breakdown=breakdown,
        excluded=excluded,
        sent=breakdown["sent"] + breakdown["delivered"],
        delivered=breakdown["delivered"],
        failed=breakdown["failed"],
        opted_out=int(engagement["opted_out"]),
        replied=int(engagement["replied"]),
        booked=int(engagement["booked"]),
        segments_sent=segments,
        cost_usd=round(segments * COST_PER_SEGMENT_USD, 4),
    )
