"""A campaign's life: created as a draft, scheduled (or sent now), paused, resumed, cancelled, started when due,
its recipient list materialised from the segment.  Staff commands run these in their own ``tenant_scope``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database
from domain.audience import SegmentFilter
from domain.templates import CAMPAIGN_PLACEHOLDERS, validate_template
from worker.campaigns.segments import segment_sql
from worker.outbox.writes import withdraw_campaign_messages

MATERIALISE_BATCH = 10_000
# What a withdrawn campaign row says (``outbox.error_message``): a paused campaign's rows are queued again on resume.
PAUSED_MARK = "campaign paused"
CANCELLED_MARK = "campaign cancelled"

_INSERT = """
INSERT INTO campaigns (clinic_id, name, template, segment, status, rate_cap_per_s, created_by)
VALUES (:clinic_id, :name, :template, CAST(:segment AS jsonb), 'draft', :cap, :by) RETURNING id
"""
_GET = "SELECT * FROM campaigns WHERE id = :id AND clinic_id = :clinic_id"
_STATUS = "SELECT status FROM campaigns WHERE id = :id"
_LIST = """
SELECT c.id, c.name, c.status, c.scheduled_at, c.started_at, c.completed_at, c.rate_cap_per_s,
       (SELECT count(*) FROM campaign_recipients r WHERE r.campaign_id = c.id) AS recipients
FROM campaigns c WHERE c.clinic_id = :clinic_id ORDER BY c.id DESC
"""
_SET_STATUS = "UPDATE campaigns SET status = :status WHERE id = :id"
_SCHEDULE = "UPDATE campaigns SET status = :status, scheduled_at = :at WHERE id = :id"
_CANCEL = "UPDATE campaigns SET status = 'cancelled', completed_at = :now WHERE id = :id"
_CANCEL_PENDING = "UPDATE campaign_recipients SET status = 'cancelled' WHERE campaign_id = :id AND status = 'pending'"
# Withdrawn rows' recipients: back to pending (a pause: re-decided on resume) or cancelled.
_WITHDRAWN_RECIPIENTS = """
UPDATE campaign_recipients SET status = CAST(:rstatus AS text),
       outbox_id = CASE WHEN CAST(:rstatus AS text) = 'pending' THEN NULL ELSE outbox_id END
WHERE campaign_id = :id AND outbox_id = ANY(:withdrawn)
"""
_START_DUE = """
UPDATE campaigns SET status = 'sending'
WHERE clinic_id = :clinic_id AND status = 'scheduled' AND scheduled_at <= :now
"""
_WITH_DUE_WORK = """
SELECT c.id FROM campaigns c
WHERE c.clinic_id = :clinic_id AND c.status = 'sending'
  AND (c.started_at IS NULL OR EXISTS (
       SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'pending'
         AND (r.send_after IS NULL OR r.send_after <= :now))
       OR NOT EXISTS (
       SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'pending'))
ORDER BY c.id
"""
_CLINIC_ZONE = "SELECT timezone FROM clinics WHERE id = :id"
_SEGMENT_PAGE = "SELECT id FROM ({segment}) seg WHERE id > :after ORDER BY id LIMIT :batch"
_MARK_LIST_COMPLETE = "UPDATE campaigns SET started_at = coalesce(started_at, :now) WHERE id = :id"
_ADD_RECIPIENTS = """
INSERT INTO campaign_recipients (clinic_id, campaign_id, client_id)
SELECT :clinic_id, :campaign_id, unnest(CAST(:ids AS bigint[]))
ON CONFLICT (campaign_id, client_id) DO NOTHING
"""


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


@dataclass(frozen=True)
class CampaignSummary:
    """One line of the campaign list."""

    id: int
    name: str
    status: str
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    rate_cap_per_s: float | None
    recipients: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    params = {
        "clinic_id": clinic_id,
        "name": name.strip(),
        "template": template,
        "segment": json.dumps(segment.to_dict()),
        "cap": rate_cap_per_s,
        "by": created_by,
    }
    return int(session.execute(text(_INSERT), params).scalar_one())


def get_campaign(session: Session, clinic_id: int, campaign_id: int, *, lock: bool = False) -> Campaign:
    row = (
        session.execute(text(_GET + (" FOR UPDATE" if lock else "")), {"id": campaign_id, "clinic_id": clinic_id})
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


def list_campaigns(session: Session, clinic_id: int) -> list[CampaignSummary]:
    return [CampaignSummary(**row) for row in session.execute(text(_LIST), {"clinic_id": clinic_id}).mappings().all()]


def campaign_status(database: Database, clinic_id: int, campaign_id: int) -> str:
    with database.tenant_scope(clinic_id) as session:
        return str(session.execute(text(_STATUS), {"id": campaign_id}).scalar_one())


# ------------------------------------------------------------------ state changes
def clinic_instant(session: Session, clinic_id: int, at: datetime) -> datetime:
    """``at`` as an instant: a date-time written without an offset is the clinic's local time."""
    if at.tzinfo is not None:
        return at
    zone = session.execute(text(_CLINIC_ZONE), {"id": clinic_id}).scalar_one()
    return at.replace(tzinfo=ZoneInfo(zone))


def schedule_campaign(session: Session, clinic_id: int, campaign_id: int, at: datetime, now: datetime) -> str:
    """Schedule for ``at`` (or send now when ``at`` is not in the future).  Returns the new status."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status not in ("draft", "scheduled"):
        raise CampaignError(
            f"campaign {campaign_id} is {campaign.status}; only a draft or scheduled one can be scheduled"
        )
    status = "sending" if at <= now else "scheduled"
    session.execute(text(_SCHEDULE), {"status": status, "at": at, "id": campaign_id})
    return status


def pause_campaign(session: Session, clinic_id: int, campaign_id: int) -> int:
    """Stop sending now: queued messages not yet claimed by a sender are withdrawn (their recipients go back to
    pending and are re-decided on resume).  Returns how many were withdrawn."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status not in ("sending", "scheduled"):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a sending or scheduled one can pause")
    session.execute(text(_SET_STATUS), {"status": "paused", "id": campaign_id})
    return _withdraw(session, clinic_id, campaign_id, PAUSED_MARK, "pending")


def resume_campaign(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> str:
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status != "paused":
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}, not paused")
    status = (
        "scheduled" if campaign.scheduled_at and campaign.scheduled_at > now and not campaign.started_at else "sending"
    )
    session.execute(text(_SET_STATUS), {"status": status, "id": campaign_id})
    return status


def cancel_campaign(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> int:
    """Cancel for good: nothing more is sent.  Returns recipients who will now get nothing."""
    campaign = get_campaign(session, clinic_id, campaign_id, lock=True)
    if campaign.status in ("completed", "cancelled"):
        raise CampaignError(f"campaign {campaign_id} is already {campaign.status}")
    session.execute(text(_CANCEL), {"id": campaign_id, "now": now})
    withdrawn = _withdraw(session, clinic_id, campaign_id, CANCELLED_MARK, "cancelled")
    pending = session.execute(text(_CANCEL_PENDING), {"id": campaign_id}).rowcount  # type: ignore[attr-defined]
    return int(pending) + withdrawn


def _withdraw(session: Session, clinic_id: int, campaign_id: int, mark: str, recipient_status: str) -> int:
    """Queued outbox rows of the campaign → cancelled (by the outbox's owner), and their recipients with them."""
    withdrawn = withdraw_campaign_messages(session, clinic_id, campaign_id, mark)
    if not withdrawn:
        return 0
    return int(
        session.execute(
            text(_WITHDRAWN_RECIPIENTS), {"id": campaign_id, "rstatus": recipient_status, "withdrawn": withdrawn}
        ).rowcount  # type: ignore[attr-defined]
    )


def start_due_campaigns(session: Session, clinic_id: int, now: datetime) -> list[int]:
    """Scheduled campaigns whose time came become ``sending``; returns every campaign with work to do."""
    session.execute(text(_START_DUE), {"clinic_id": clinic_id, "now": now})
    return [int(r) for r in session.execute(text(_WITH_DUE_WORK), {"clinic_id": clinic_id, "now": now}).scalars()]


def materialise_recipients(
    database: Database, clinic_id: int, campaign: Campaign, now: datetime, batch: int = MATERIALISE_BATCH
) -> int:
    """Segment → ``campaign_recipients`` in keyset batches (idempotent); marks the list complete."""
    seg_sql, params = segment_sql(campaign.segment)
    page = _SEGMENT_PAGE.format(segment=seg_sql)
    with database.tenant_scope(clinic_id) as session:
        tz = session.execute(text(_CLINIC_ZONE), {"id": clinic_id}).scalar_one()
    after = 0
    total = 0
    while True:
        with database.tenant_scope(clinic_id) as session:
            ids = (
                session.execute(
                    text(page),
                    {**params, "clinic_id": clinic_id, "tz": tz, "now": now, "after": after, "batch": batch},
                )
                .scalars()
                .all()
            )
            if not ids:
                session.execute(text(_MARK_LIST_COMPLETE), {"id": campaign.id, "now": now})
                return total
            total += session.execute(
                text(_ADD_RECIPIENTS), {"clinic_id": clinic_id, "campaign_id": campaign.id, "ids": list(ids)}
            ).rowcount  # type: ignore[attr-defined]
            after = int(ids[-1])
