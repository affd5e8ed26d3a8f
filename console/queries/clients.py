"""Clients: search, and one client's profile (details, consent ledger, upcoming and past visits, conversations)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain.appointments import VISITED_STATUSES
from worker.appointments.store import upcoming_visit

# "Theirs": a provider's patients are those with an appointment (any status) with them.
OWN_PATIENT = """(CAST(:provider_id AS bigint) IS NULL OR EXISTS (
    SELECT 1 FROM appointments own WHERE own.client_id = {client} AND own.provider_id = CAST(:provider_id AS bigint)
      AND own.kind = 'appointment'))"""

_SEARCH = f"""
SELECT c.id, c.name, c.phone_e164 AS phone, c.email, c.consent_state, c.tags,
       coalesce(lower(c.name), '') AS sort_name,
       (SELECT max(a.starts_at) FROM appointments a WHERE a.client_id = c.id
          AND a.status IN {sql_list(VISITED_STATUSES)}) AS last_visit,
       (SELECT min(a.starts_at) FROM appointments a WHERE a.client_id = c.id
          AND {upcoming_visit("a", "now()")}) AS next_visit
FROM clients c
WHERE {OWN_PATIENT.format(client="c.id")}
  AND (CAST(:q AS text) IS NULL OR c.name ILIKE :pattern OR c.email ILIKE :pattern
       OR (CAST(:digits AS text) <> '' AND regexp_replace(coalesce(c.phone_e164, ''), '\\D', '', 'g') LIKE :digit_pattern))
  AND (CAST(:after_name AS text) IS NULL
       OR (coalesce(lower(c.name), ''), c.id) > (CAST(:after_name AS text), CAST(:after_id AS bigint)))
ORDER BY coalesce(lower(c.name), ''), c.id
LIMIT :limit
"""
_CLIENT = f"""
SELECT c.id, c.name, c.phone_e164 AS phone, c.email, c.timezone, c.consent_state, c.sms_status, c.tags, c.notes,
       c.created_at, {OWN_PATIENT.format(client="c.id")} AS within_reach
FROM clients c WHERE c.id = :client_id
"""
_CONSENT = """
SELECT id, kind, source, wording, created_at FROM consent_events WHERE client_id = :client_id
ORDER BY created_at DESC, id DESC LIMIT 100
"""
_VISITS = """
SELECT a.id, a.starts_at, a.ends_at, a.status, a.provider_id, p.name AS provider_name, a.service_id,
       s.name AS service_name, a.deposit_cents
FROM appointments a LEFT JOIN providers p ON p.id = a.provider_id LEFT JOIN services s ON s.id = a.service_id
WHERE a.client_id = :client_id AND a.kind = 'appointment' AND {when}
ORDER BY a.starts_at {order} LIMIT :limit
"""
_CONVERSATIONS = """
SELECT id, channel, agent_state, handoff_urgency, last_message_at FROM conversations WHERE client_id = :client_id
ORDER BY last_message_at DESC NULLS LAST, id DESC
"""


def search(
    session: Session, *, q: str | None, provider_id: int | None, after: tuple[str, int] | None, limit: int
) -> list[dict[str, Any]]:
    q = (q or "").strip() or None
    digits = re.sub(r"\D", "", q or "")
    rows = session.execute(
        text(_SEARCH),
        {
            "q": q,
            "pattern": f"%{_like_escape(q or '')}%",
            "digits": digits if len(digits) >= 3 else "",
            "digit_pattern": f"%{digits}%",
            "provider_id": provider_id,
            "after_name": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        },
    ).mappings()
    return [dict(r) for r in rows]


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class ClientLookup:
    found: bool
    within_reach: bool
    row: dict[str, Any] | None


def lookup(session: Session, client_id: int, provider_id: int | None) -> ClientLookup:
    """Whether the client exists in this clinic (row-level security hides every other clinic's), and whether
    the caller's reach covers them (a provider: only their own patients)."""
    row = session.execute(text(_CLIENT), {"client_id": client_id, "provider_id": provider_id}).mappings().one_or_none()
    if row is None:
        return ClientLookup(False, False, None)
    return ClientLookup(True, bool(row["within_reach"]), dict(row))


def consent_ledger(session: Session, client_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(_CONSENT), {"client_id": client_id}).mappings()]


# Upcoming is the one definition the agent and the automations use (a visit in progress, checked in or not, is
# still upcoming); the recent list is what has started and is not upcoming, so no visit shows in both.
_UPCOMING = upcoming_visit("a", ":now")
_RECENT = f"a.starts_at < :now AND NOT ({_UPCOMING})"


def visits(session: Session, client_id: int, *, upcoming: bool, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    sql = _VISITS.format(when=_UPCOMING if upcoming else _RECENT, order="ASC" if upcoming else "DESC")
    params = {"client_id": client_id, "now": now, "limit": limit}
    return [dict(r) for r in session.execute(text(sql), params).mappings()]


def conversations(session: Session, client_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(_CONVERSATIONS), {"client_id": client_id}).mappings()]
