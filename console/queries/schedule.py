"""The calendar and the catalogue: a day's appointments (and blocked time) per provider, services, providers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import RELEASED_STATUSES

# A day in the clinic's time zone: [local midnight, next local midnight) converted to instants (DST-correct).
_DAY = f"""
SELECT a.id, a.kind, a.starts_at, a.ends_at, a.status, a.provider_id, p.name AS provider_name, a.client_id,
       cl.name AS client_name, a.service_id, s.name AS service_name, a.deposit_cents, a.conversation_id
FROM appointments a
JOIN providers p ON p.id = a.provider_id
LEFT JOIN clients cl ON cl.id = a.client_id
LEFT JOIN services s ON s.id = a.service_id
WHERE a.starts_at >= (CAST(:day AS date) + time '00:00') AT TIME ZONE CAST(:tz AS text)
  AND a.starts_at < (CAST(:day AS date) + 1 + time '00:00') AT TIME ZONE CAST(:tz AS text)
  AND (CAST(:provider_id AS bigint) IS NULL OR a.provider_id = CAST(:provider_id AS bigint))
  AND (CAST(:include_cancelled AS boolean) OR a.status NOT IN {sql_list(RELEASED_STATUSES)})
  AND (CAST(:after_at AS timestamptz) IS NULL
       OR (a.starts_at, a.id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS bigint)))
ORDER BY a.starts_at, a.id
LIMIT :limit
"""
_SERVICES = """
SELECT id, slug, name, category, description, duration_min, buffer_min, price_cents, price_note, deposit_cents, active
FROM services ORDER BY category, name, id
"""
_PROVIDERS = """
SELECT p.id, p.slug, p.name, p.title, p.active, p.working_hours,
       coalesce(array_agg(ps.service_id ORDER BY ps.service_id) FILTER (WHERE ps.service_id IS NOT NULL), '{}')
           AS service_ids
FROM providers p LEFT JOIN provider_services ps ON ps.provider_id = p.id
GROUP BY p.id ORDER BY p.name, p.id
"""
_PROVIDER_EXISTS = "SELECT EXISTS (SELECT 1 FROM providers WHERE id = :id)"


def day(
    session: Session,
    *,
    day: date,
    timezone: str,
    provider_id: int | None,
    include_cancelled: bool,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = session.execute(
        text(_DAY),
        {
            "day": day,
            "tz": timezone,
            "provider_id": provider_id,
            "include_cancelled": include_cancelled,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        },
    ).mappings()
    return [dict(r) for r in rows]


def services(session: Session) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(_SERVICES)).mappings()]


def providers(session: Session) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(_PROVIDERS)).mappings()]


def provider_exists(session: Session, provider_id: int) -> bool:
    return bool(session.execute(text(_PROVIDER_EXISTS), {"id": provider_id}).scalar())


# One appointment or block as the calendar's writes answer it (row-level security: only the clinic's).
_APPOINTMENT = """
SELECT id, kind, status, provider_id, client_id, service_id, starts_at, ends_at, deposit_cents, hold_expires_at,
       amount_charged_cents
FROM appointments WHERE id = :id
"""


def appointment(session: Session, appointment_id: int) -> dict[str, Any] | None:
    row = session.execute(text(_APPOINTMENT), {"id": appointment_id}).mappings().one_or_none()
    return dict(row) if row is not None else None
