"""The waitlist's tables: named statements and the reads/writes every waitlist path shares (joining from the
agent's tool, the staff commands, the offer job, the reply path).  SQLAlchemy ``:name`` binds, in the caller's
``tenant_scope`` session."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import APPOINTMENT, VISITED_STATUSES
from domain.waitlist import Entry, Window, windows_from_json, windows_to_json

# One active entry per patient and service: joining again updates what they wait for.
_JOIN = """
INSERT INTO waitlist_entries (clinic_id, client_id, service_id, provider_id, windows, date_from, date_to,
                              conversation_id)
VALUES (:c, :client, :service, :provider, CAST(:windows AS jsonb), :date_from, :date_to, :conv)
ON CONFLICT (clinic_id, client_id, service_id) WHERE status = 'active'
DO UPDATE SET provider_id = EXCLUDED.provider_id, windows = EXCLUDED.windows, date_from = EXCLUDED.date_from,
              date_to = EXCLUDED.date_to, conversation_id = EXCLUDED.conversation_id, updated_at = now()
RETURNING id, (xmax = 0) AS created
"""
_LIST = """
SELECT e.id, e.created_at, e.status, e.windows, e.date_from, e.date_to, e.removed_reason, e.appointment_id,
       c.name AS client_name, c.phone_e164 AS phone, s.name AS service, p.name AS provider,
       (SELECT count(*) FROM waitlist_offers o WHERE o.entry_id = e.id AND o.status <> 'skipped') AS offers
FROM waitlist_entries e JOIN clients c ON c.id = e.client_id JOIN services s ON s.id = e.service_id
LEFT JOIN providers p ON p.id = e.provider_id
WHERE e.clinic_id = :c AND (CAST(:all AS boolean) OR e.status = 'active')
  AND (CAST(:service AS text) IS NULL OR s.slug = :service)
ORDER BY e.created_at, e.id
"""
_REMOVE = """
UPDATE waitlist_entries SET status = 'removed', removed_reason = :reason, updated_at = now()
WHERE id = :id AND clinic_id = :c AND status = 'active'
RETURNING id
"""
# Active entries that could take an opening on this provider (the services they do; them or anyone).
_ENTRIES_FOR = """
SELECT e.id, e.client_id, e.service_id, e.provider_id, e.created_at, e.windows, e.date_from, e.date_to
FROM waitlist_entries e
WHERE e.clinic_id = :c AND e.status = 'active' AND e.service_id = ANY(:services)
  AND (e.provider_id IS NULL OR e.provider_id = :provider)
ORDER BY e.created_at, e.id
"""
_LAST_SEEN_PROVIDER = f"""
SELECT a.provider_id FROM appointments a JOIN providers p ON p.id = a.provider_id AND p.active
WHERE a.clinic_id = :c AND a.client_id = :client AND a.kind = '{APPOINTMENT}'
  AND a.status IN {sql_list(VISITED_STATUSES)}
ORDER BY a.starts_at DESC LIMIT 1
"""


@dataclass(frozen=True)
class Joined:
    entry_id: int
    created: bool


def join(
    session: Session,
    clinic_id: int,
    client_id: int,
    *,
    service_id: int,
    provider_id: int | None,
    windows: tuple[Window, ...],
    date_from: date | None,
    date_to: date | None,
    conversation_id: int | None,
) -> Joined:
    row = session.execute(
        text(_JOIN),
        {
            "c": clinic_id,
            "client": client_id,
            "service": service_id,
            "provider": provider_id,
            "windows": json.dumps(windows_to_json(windows)),
            "date_from": date_from,
            "date_to": date_to,
            "conv": conversation_id,
        },
    ).one()
    return Joined(int(row.id), bool(row.created))


def list_entries(
    session: Session, clinic_id: int, *, include_inactive: bool = False, service_slug: str | None = None
) -> list[dict[str, Any]]:
    rows = session.execute(text(_LIST), {"c": clinic_id, "all": include_inactive, "service": service_slug})
    return [dict(r) for r in rows.mappings().all()]


def remove(session: Session, clinic_id: int, entry_id: int, reason: str) -> bool:
    return session.execute(text(_REMOVE), {"c": clinic_id, "id": entry_id, "reason": reason}).first() is not None


def entry_of(row: Mapping[Any, Any]) -> Entry:
    return Entry(
        id=int(row["id"]),
        client_id=int(row["client_id"]),
        service_id=int(row["service_id"]),
        provider_id=row["provider_id"],
        created_at=row["created_at"],
        windows=windows_from_json(row["windows"]),
        date_from=row["date_from"],
        date_to=row["date_to"],
    )


def entries_for(session: Session, clinic_id: int, provider_id: int, service_ids: list[int]) -> list[Entry]:
    rows = session.execute(text(_ENTRIES_FOR), {"c": clinic_id, "services": service_ids, "provider": provider_id})
    return [entry_of(r) for r in rows.mappings().all()]


def last_seen_provider(session: Session, clinic_id: int, client_id: int) -> int | None:
    """The provider of the patient's last attended (completed) visit, if they still work here."""
    found = session.execute(text(_LAST_SEEN_PROVIDER), {"c": clinic_id, "client": client_id}).scalar_one_or_none()
    return int(found) if found is not None else None


def describe_windows(raw: Any) -> str:
    windows = windows_from_json(raw)
    return "; ".join(w.describe() for w in windows) if windows else "any time"


def local_day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else ""
