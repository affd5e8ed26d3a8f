"""Durable inbox writes from the webhook app (async psycopg, app role, RLS).

``record`` inserts the event keyed by its provider id with ON CONFLICT DO
NOTHING and reports whether it was new: a replayed or concurrent duplicate
webhook is a no-op.  The insert commits before the HTTP response is sent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

# One statement, one round trip, its own (autocommit) transaction: the CTE sets the transaction-local
# clinic before the INSERT produces its row, so the row-level-security check sees it; the setting ends with
# the statement.  (BEGIN / set_config / INSERT / COMMIT cost four round trips on the hottest path.)
_INSERT = """
WITH clinic AS MATERIALIZED (SELECT set_config('app.clinic_id', %s, true) AS id)
INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
SELECT %s, %s, %s, %s, %s::jsonb, %s FROM clinic
ON CONFLICT (clinic_id, source, provider_event_id) DO NOTHING
RETURNING id
"""


@dataclass(frozen=True)
class ClinicRoute:
    clinic_id: int
    name: str
    phone: str


class Inbox:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._numbers: dict[str, ClinicRoute] = {}
        self._numbers_loaded_at = 0.0

    async def record(
        self,
        clinic_id: int,
        source: str,
        provider_event_id: str,
        sender_key: str,
        payload: dict[str, Any],
        trace_id: str,
    ) -> int | None:
        """Insert; returns the new row id, or None when the event was already recorded."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _INSERT,
                (str(clinic_id), clinic_id, source, provider_event_id, sender_key, json.dumps(payload), trace_id),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def clinic_for_number(self, e164: str) -> ClinicRoute | None:
        """The clinic that owns an SMS number (the tenant directory; cached, refreshed on a miss)."""
        route = self._numbers.get(e164)
        if route is not None and time.monotonic() - self._numbers_loaded_at < 300:
            return route
        if time.monotonic() - self._numbers_loaded_at > 1.0 or route is not None:
            await self._load_numbers()
        return self._numbers.get(e164)

    async def _load_numbers(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT n.e164, c.id, c.name, c.phone FROM clinic_phone_numbers n JOIN clinics c ON c.id = n.clinic_id"
            )
            rows = await cur.fetchall()
        self._numbers = {r[0]: ClinicRoute(int(r[1]), r[2], r[3]) for r in rows}
        self._numbers_loaded_at = time.monotonic()

    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")
