"""What each recipient's campaign text says: the context shared by one run (clinic, template, policy, the next
open slot) and the rendering, with the opt-out footer on a client's first marketing text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import availability
from domain.audience import Decision, SegmentFilter, SendPolicy
from domain.ports import BusyInterval
from domain.templates import CAMPAIGN_PLACEHOLDERS, Template, first_name, validate_template, when_label, with_footer
from worker.outbox.planning import SENDING_CLINIC

_CLINIC_HOURS = "SELECT timezone, business_hours, holidays, policies FROM clinics WHERE id = :id"
_SLOT_SERVICE = """
SELECT id, duration_min, buffer_min FROM services WHERE clinic_id = :c AND active
ORDER BY (slug = ANY(CAST(:slugs AS text[]))) DESC, (slug = 'consultation') DESC, id LIMIT 1
"""
_SLOT_PROVIDERS = """
SELECT p.id, p.name, p.working_hours FROM providers p
JOIN provider_services ps ON ps.provider_id = p.id AND ps.service_id = :s
WHERE p.clinic_id = :c AND p.active ORDER BY p.id
"""
_BUSY = """
SELECT provider_id, starts_at, blocked_until FROM appointments
WHERE clinic_id = :c AND status IN ('pending_deposit','booked','confirmed')
  AND starts_at < :end AND blocked_until > :start
"""


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
    clinic = session.execute(text(SENDING_CLINIC), {"id": clinic_id}).mappings().one()
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

    clinic = session.execute(text(_CLINIC_HOURS), {"id": clinic_id}).one()
    service = session.execute(text(_SLOT_SERVICE), {"c": clinic_id, "slugs": list(service_slugs)}).one_or_none()
    if service is None:
        return None
    providers = session.execute(text(_SLOT_PROVIDERS), {"c": clinic_id, "s": service.id}).all()
    end = now + timedelta(days=14)
    busy: dict[int, list[Any]] = {p.id: [] for p in providers}
    for row in session.execute(text(_BUSY), {"c": clinic_id, "start": now, "end": end}):
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
