"""Durable inbox writes from the webhook app (async psycopg, app role, RLS).

``record`` inserts the event keyed by its provider id with ON CONFLICT DO
NOTHING and reports whether it was new: a replayed or concurrent duplicate
webhook is a no-op.  The insert commits before the HTTP response is sent.

Concurrent requests' rows are group-committed (``webhooks.batching``): one
multi-row INSERT per clinic per batch, one round trip and one WAL flush for
all of them.  Duplicates inside a batch are settled before the INSERT (the
first occurrence is the new one), so exactly one request sees "new".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from webhooks.batching import MicroBatcher

# One statement, one round trip, its own (autocommit) transaction: the CTE sets the transaction-local
# clinic before the INSERT produces its row, so the row-level-security check sees it; the setting ends with
# the statement.  (BEGIN / set_config / INSERT / COMMIT cost four round trips on the hottest path.)
_INSERT = """
WITH clinic AS MATERIALIZED (SELECT set_config('app.clinic_id', %s, true) AS id)
INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
SELECT %s, r.source, r.provider_event_id, r.sender_key, r.payload, r.trace_id
FROM clinic, unnest(%s::text[], %s::text[], %s::text[], %s::jsonb[], %s::text[])
     WITH ORDINALITY AS r(source, provider_event_id, sender_key, payload, trace_id, n)
ORDER BY r.n
ON CONFLICT (clinic_id, source, provider_event_id) DO NOTHING
RETURNING id, source, provider_event_id
"""


@dataclass(frozen=True)
class _Event:
    clinic_id: int
    source: str
    provider_event_id: str
    sender_key: str
    payload: str
    trace_id: str


@dataclass(frozen=True)
class ClinicRoute:
    clinic_id: int
    name: str
    phone: str


class Inbox:
    def __init__(self, pool: AsyncConnectionPool, *, max_batch: int = 128, max_in_flight: int = 2) -> None:
        self.pool = pool
        self._numbers: dict[str, ClinicRoute] = {}
        self._numbers_loaded_at = 0.0
        self._writer: MicroBatcher[_Event, int | None] = MicroBatcher(
            self._write, max_batch=max_batch, max_in_flight=max_in_flight
        )

    async def record(
        self,
        clinic_id: int,
        source: str,
        provider_event_id: str,
        sender_key: str,
        payload: dict[str, Any],
        trace_id: str,
    ) -> int | None:
        """Insert (committed when this returns); the new row id, or None when the event was already recorded."""
        return await self._writer.submit(
            _Event(clinic_id, source, provider_event_id, sender_key, json.dumps(payload), trace_id)
        )

    async def _write(self, events: Sequence[_Event]) -> list[int | None]:
        by_clinic: dict[int, list[_Event]] = {}
        first: dict[tuple[int, str, str], _Event] = {}
        for event in events:
            key = (event.clinic_id, event.source, event.provider_event_id)
            if key not in first:  # a duplicate inside the batch is a replay of the first occurrence
                first[key] = event
                by_clinic.setdefault(event.clinic_id, []).append(event)
        ids: dict[tuple[int, str, str], int] = {}
        async with self.pool.connection() as conn:
            for clinic_id, rows in by_clinic.items():
                cur = await conn.execute(
                    _INSERT,
                    (
                        str(clinic_id),
                        clinic_id,
                        [r.source for r in rows],
                        [r.provider_event_id for r in rows],
                        [r.sender_key for r in rows],
                        [r.payload for r in rows],
                        [r.trace_id for r in rows],
                    ),
                )
                for row_id, source, provider_event_id in await cur.fetchall():
                    ids[(clinic_id, source, provider_event_id)] = int(row_id)
        results: list[int | None] = []
        for event in events:
            key = (event.clinic_id, event.source, event.provider_event_id)
            results.append(ids.get(key) if first[key] is event else None)
        return results

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
