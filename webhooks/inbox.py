"""Durable inbox writes from the webhook app (async psycopg, app role, RLS).

``record`` inserts the event keyed by its provider id with ON CONFLICT DO
NOTHING and reports whether it was new: a replayed or concurrent duplicate
webhook is a no-op.  The insert commits before the HTTP response is sent.

Concurrent requests' rows are group-committed (``webhooks.batching``): one
multi-row INSERT per clinic per batch, one round trip and one WAL flush for
all of them.  Duplicates inside a batch are settled before the INSERT (the
first occurrence is the new one), so exactly one request sees "new".

One bad row must not fail its neighbours: when a clinic's multi-row INSERT
fails for anything but the connection (a value Postgres refuses, however it got
past the edge validation), its rows are retried one by one and only the rows
that fail on their own fail — their callers get ``EventRejected`` (a 400), the
others are recorded and acknowledged.  Nor may another batch fail it: two batches
(two replicas, or one process's two in flight) that carry some of the same
provider ids in opposite orders deadlock on each other's keys, and the one
Postgres aborts is retried row by row (a single row waits for at most one key,
so it cannot deadlock), keeping the arrival order.  A lost connection or server
still fails the whole batch (every caller answers 5xx; the provider's retry is
safe).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from db.arrays import JsonbArray, TextArray
from webhooks.batching import ItemFailed, MicroBatcher

log = logging.getLogger(__name__)

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


class EventRejected(Exception):
    """This event's row cannot be stored (its content, not the database): the request answers 400.  The message
    names the error class only — database errors quote the offending values, which may be PHI."""


# Errors a row's own content causes (its values, not the connection): isolated to that row.
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, UnicodeError, ValueError)
# Errors another transaction causes, not the rows: the statement is rolled back whole and its rows are recorded
# one by one instead (a deadlock with a concurrent batch over the same keys; a serialization failure likewise).
_CONTENTION = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

_Key = tuple[int, str, str]


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
        """Insert (committed when this returns); the new row id, or None when the event was already recorded.
        Raises ``EventRejected`` when this event's row cannot be stored (other requests are unaffected)."""
        return await self._writer.submit(
            _Event(clinic_id, source, provider_event_id, sender_key, json.dumps(payload), trace_id)
        )

    async def _write(self, events: Sequence[_Event]) -> list[int | None | ItemFailed]:
        by_clinic: dict[int, list[_Event]] = {}
        first: dict[_Key, _Event] = {}
        for event in events:
            key = _key(event)
            if key not in first:  # a duplicate inside the batch is a replay of the first occurrence
                first[key] = event
                by_clinic.setdefault(event.clinic_id, []).append(event)
        ids: dict[_Key, int] = {}
        failed: dict[_Key, ItemFailed] = {}
        async with self.pool.connection() as conn:
            for clinic_id, rows in by_clinic.items():
                try:
                    ids |= await self._insert(conn, clinic_id, rows)
                except _CONTENTION:
                    # Autocommit: the aborted statement left nothing behind.  Its keys' other writer has committed
                    # or will; row by row, each waits for it (a duplicate is then "already recorded").
                    log.info(
                        "inbox batch met a concurrent batch's keys; recorded row by row", extra={"rows": len(rows)}
                    )
                    for key, outcome in (await self._insert_one_by_one(conn, clinic_id, rows)).items():
                        if isinstance(outcome, ItemFailed):
                            failed[key] = outcome
                        elif outcome is not None:
                            ids[key] = outcome
                except _ROW_ERRORS as exc:
                    # Autocommit: the failed statement left nothing behind and the connection is usable.
                    if len(rows) == 1:
                        isolated: dict[_Key, int | None | ItemFailed] = {_key(rows[0]): _rejected(exc)}
                    else:
                        isolated = await self._insert_one_by_one(conn, clinic_id, rows)
                    reasons: list[str] = []
                    for key, outcome in isolated.items():
                        if isinstance(outcome, ItemFailed):
                            failed[key] = outcome
                            reasons.append(str(outcome.error))
                        elif outcome is not None:
                            ids[key] = outcome
                    log.warning(
                        "inbox rows rejected; the rest of the batch was recorded",
                        extra={
                            "clinic_id": clinic_id,
                            "rows": len(rows),
                            "rejected": len(reasons),
                            "errors": sorted(set(reasons)),
                        },
                    )
        results: list[int | None | ItemFailed] = []
        for event in events:
            key = _key(event)
            if key in failed:  # a replay of a rejected event is rejected too, not "already recorded"
                results.append(failed[key])
            else:
                results.append(ids.get(key) if first[key] is event else None)
        return results

    async def _insert(self, conn: psycopg.AsyncConnection[Any], clinic_id: int, rows: list[_Event]) -> dict[_Key, int]:
        cur = await conn.execute(
            _INSERT,
            (
                str(clinic_id),
                clinic_id,
                TextArray(r.source for r in rows),
                TextArray(r.provider_event_id for r in rows),
                TextArray(r.sender_key for r in rows),
                JsonbArray(r.payload for r in rows),
                TextArray(r.trace_id for r in rows),
            ),
        )
        return {(clinic_id, source, event_id): int(row_id) for row_id, source, event_id in await cur.fetchall()}

    async def _insert_one_by_one(
        self, conn: psycopg.AsyncConnection[Any], clinic_id: int, rows: list[_Event]
    ) -> dict[_Key, int | None | ItemFailed]:
        outcomes: dict[_Key, int | None | ItemFailed] = {}
        for row in rows:
            try:
                outcomes[_key(row)] = (await self._insert(conn, clinic_id, [row])).get(_key(row))
            except _ROW_ERRORS as exc:
                outcomes[_key(row)] = _rejected(exc)
        return outcomes

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


def _key(event: _Event) -> _Key:
    return (event.clinic_id, event.source, event.provider_event_id)


def _rejected(exc: Exception) -> ItemFailed:
    """The error class, SQLSTATE and constraint name: schema facts that say what failed, never the values."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    details = ", ".join(
        part
        for part in (f"SQLSTATE {sqlstate}" if sqlstate else "", f"constraint {constraint}" if constraint else "")
        if part
    )
    return ItemFailed(EventRejected(type(exc).__name__ + (f" ({details})" if details else "")))
