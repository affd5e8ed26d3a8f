"""The one clinic loader: a ``clinics`` row (and its routing) into ``domain.clinic.Clinic``.

Every reader of a clinic's facts and policies goes through here (the worker's per-process cache in
``worker.container.Container.clinic``, the agent's tools, the booking service, the staff commands), so a new
policy is parsed in one place (``domain/clinic.py``).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.clinic import Clinic, ClinicRouting

# Inside the clinic's tenant scope (its phone numbers are tenant rows).
_CLINIC = text(
    """SELECT c.id, c.slug, c.name, c.timezone, c.phone, c.address, c.business_hours, c.holidays, c.policies,
              c.oncall_phone, n.e164 AS sms_number, n.messaging_service_sid
       FROM clinics c
       LEFT JOIN LATERAL (SELECT e164, messaging_service_sid FROM clinic_phone_numbers n
                          WHERE n.clinic_id = c.id ORDER BY n.id LIMIT 1) n ON true
       WHERE c.id = :id"""
)
# The tenant directory (no clinic set): which clinic a slug names.
_CLINIC_ID_BY_SLUG = text("SELECT id FROM clinics WHERE slug = :slug")


def load_clinic(session: Session, clinic_id: int) -> Clinic | None:
    """The clinic ``clinic_id`` with its routing, or None.  ``session`` is scoped to that clinic."""
    row = session.execute(_CLINIC, {"id": clinic_id}).mappings().one_or_none()
    if row is None:
        return None
    return Clinic(
        id=int(row["id"]),
        name=row["name"],
        timezone=row["timezone"],
        phone=row["phone"] or "",
        address=row["address"] or "",
        business_hours=dict(row["business_hours"] or {}),
        holidays=list(row["holidays"] or []),
        policies=dict(row["policies"] or {}),
        slug=row["slug"] or "",
        routing=ClinicRouting(
            sms_number=row["sms_number"] or "",
            oncall_phone=row["oncall_phone"],
            messaging_service_sid=row["messaging_service_sid"],
        ),
    )


def clinic_id_for_slug(session: Session, slug: str) -> int | None:
    """The id of the clinic called ``slug`` (a directory read: works before any clinic is set)."""
    value = session.execute(_CLINIC_ID_BY_SLUG, {"slug": slug}).scalar_one_or_none()
    return int(value) if value is not None else None
