"""The inbox writer on real Postgres: concurrent requests' rows share one INSERT, and a row Postgres refuses
fails only its own request — the edge validation is bypassed here on purpose, to prove the isolation."""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text

from webhooks.inbox import EventRejected, Inbox


def _sid() -> str:
    return "SM" + uuid.uuid4().hex


def _event(clinic_id: int, body: str = "hello", *, sid: str | None = None, sender: str = "sms:+14155550100"):
    return (clinic_id, "sms", sid or _sid(), sender, {"from": sender[4:], "body": body}, uuid.uuid4().hex)


def _recorded(database, clinic_id: int, sids: list[str]) -> set[str]:
    with database.tenant_scope(clinic_id) as session:
        rows = session.execute(
            text("SELECT provider_event_id FROM inbox_events WHERE provider_event_id = ANY(:sids)"), {"sids": sids}
        ).all()
    return {r[0] for r in rows}


async def _record_together(database_url: str, events: list[tuple]) -> list[object]:
    pool = AsyncConnectionPool(
        database_url.replace("postgresql+psycopg://", "postgresql://"),
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True)
    try:
        inbox = Inbox(pool, max_in_flight=1)
        # Submitted in one loop iteration: one batch, one multi-row INSERT per clinic.
        return list(await asyncio.gather(*(inbox.record(*e) for e in events), return_exceptions=True))
    finally:
        await pool.close()


def _forget(database, sids: list[str]) -> None:
    for clinic_id in (1, 2):
        with database.tenant_scope(clinic_id) as session:
            session.execute(text("DELETE FROM inbox_events WHERE provider_event_id = ANY(:s)"), {"s": sids})


def test_poisoned_rows_fail_alone_and_their_neighbours_are_recorded(infra, database):
    nul_sid, surrogate_sid, long_sender_sid = _sid(), _sid(), _sid()
    good = [_event(1, "can I book botox?"), _event(2, "what time do you open?"), _event(1, "parking?")]
    poisoned = [
        _event(1, "nul \x00 inside", sid=nul_sid),  # jsonb refuses \u0000
        _event(1, "lone \ud800 surrogate", sid=surrogate_sid),  # jsonb refuses an unpaired surrogate
        _event(2, "ok", sid=long_sender_sid, sender="sms:+1" + "5" * 200),  # longer than sender_key's column
        _event(1, "ok", sid="SM\x00" + uuid.uuid4().hex),  # text refuses NUL (refused by the driver)
    ]
    replay_of_poisoned = _event(1, "nul \x00 inside", sid=nul_sid)
    replay_of_good = _event(1, "can I book botox?", sid=good[0][2])
    events = [good[0], poisoned[0], good[1], poisoned[1], poisoned[2], good[2], poisoned[3], replay_of_poisoned]
    events.append(replay_of_good)

    try:
        results = asyncio.run(_record_together(infra.database_url, events))
        recorded_1 = _recorded(database, 1, [good[0][2], good[2][2], nul_sid, surrogate_sid])
        recorded_2 = _recorded(database, 2, [good[1][2], long_sender_sid])
    finally:  # no worker runs here: leave no unprocessed rows for later tests' "pipeline idle" checks
        _forget(database, [e[2] for e in events if "\x00" not in e[2]])  # (a NUL id was never stored)

    for index in (0, 2, 5):
        assert isinstance(results[index], int), results
    assert results[8] is None  # a replay of a recorded event in the same batch is a duplicate, not new
    rejected = [results[i] for i in (1, 3, 4, 6, 7)]
    assert all(isinstance(r, EventRejected) for r in rejected), results
    assert all("\x00" not in str(r) and "inside" not in str(r) for r in rejected)  # no values in the error
    assert recorded_1 == {good[0][2], good[2][2]}
    assert recorded_2 == {good[1][2]}


def test_a_lone_poisoned_row_is_rejected_as_such(infra):
    (result,) = asyncio.run(_record_together(infra.database_url, [_event(1, "x\x00y")]))
    assert isinstance(result, EventRejected)
