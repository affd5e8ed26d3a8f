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


async def _two_replicas_record(database_url: str, batches: list[list[tuple]]) -> list[list[object]]:
    """Each batch through its own Inbox and pool (two webhook replicas), all submitted in one loop iteration."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    pools = [AsyncConnectionPool(url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}) for _ in batches]
    for pool in pools:
        await pool.open(wait=True)
    try:
        inboxes = [Inbox(pool, max_in_flight=1) for pool in pools]
        gathered = [
            asyncio.gather(*(inbox.record(*e) for e in batch), return_exceptions=True)
            for inbox, batch in zip(inboxes, batches, strict=True)
        ]
        return [list(results) for results in await asyncio.gather(*gathered)]
    finally:
        for pool in pools:
            await pool.close()


def test_two_batches_with_the_same_provider_ids_in_opposite_orders_fail_nobody(infra, database):
    # A provider's (or the widget's) retry can reach two replicas at once, each batching it with other patients'
    # texts.  Inserted in arrival order, the two batches take the shared keys in opposite orders and deadlock:
    # Postgres aborts one, which used to fail every request of that batch (and its neighbours' texts with it).
    for _attempt in range(5):
        shared = [_sid(), _sid()]
        first = [_event(1, "retry one", sid=shared[0]), *(_event(1, f"a{i}") for i in range(125))]
        first.append(_event(1, "retry two", sid=shared[1]))
        second = [_event(1, "retry two", sid=shared[1]), *(_event(1, f"b{i}") for i in range(125))]
        second.append(_event(1, "retry one", sid=shared[0]))
        try:
            results = asyncio.run(_two_replicas_record(infra.database_url, [first, second]))
            recorded = _recorded(database, 1, [e[2] for e in first + second])
        finally:
            _forget(database, [e[2] for e in first + second])
        flat = results[0] + results[1]
        assert not [r for r in flat if isinstance(r, BaseException)], [r for r in flat if isinstance(r, BaseException)]
        assert len(recorded) == 252  # every neighbour and each shared id once
        for sid in shared:  # exactly one of the two requests for a shared id was the new one, the other a duplicate
            outcomes = [
                result
                for batch, batch_results in zip((first, second), results, strict=True)
                for event, result in zip(batch, batch_results, strict=True)
                if event[2] == sid
            ]
            assert len(outcomes) == 2 and outcomes.count(None) == 1, outcomes
