"""Hot-path statements reach their rows through indexes under row-level security.

Under RLS the planner may only use a join condition in an index scan of a protected table when the condition is
*leakproof*; one that holds ``payload->>'from'`` or ``meta->>'appointment_id'`` is not, and the statement then
scans every row of the clinic (the attach read every client per inbound text: 2.7 ms at 12,000 clients).  With
sequential scans priced out, a statement whose conditions can use the index does; one whose can't still shows
no index condition on the looked-up column — which is what these tests look for, whatever the table sizes are.
"""

from __future__ import annotations

import pytest

from db.engine import Database
from worker.conversations.attach import _EVENT_AND_LOCK
from worker.outbox.store import _LOCK_ONE

GLOW = 1


def _plan(database: Database, sql: str, params: tuple[object, ...]) -> str:
    with database.tenant_connection(GLOW) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute("EXPLAIN " + sql, params).fetchall()
        conn.rollback()
    return "\n".join(str(row[0]) for row in rows)


def _index_conditions(plan: str) -> list[str]:
    return [line.strip() for line in plan.splitlines() if line.strip().startswith("Index Cond:")]


@pytest.mark.parametrize(
    ("name", "sql", "looked_up_by"),
    [
        # the sender's client by (clinic, number): the condition on the number must reach the unique index
        ("attach: the event and its sender's client", _EVENT_AND_LOCK, "phone_e164"),
        # the appointment an automation text is about, by its id taken from the row's meta
        ("outbox claim: the row and the appointment it is about", _LOCK_ONE, "appointment_id"),
    ],
)
def test_hot_statement_finds_its_rows_by_index_under_row_level_security(
    database: Database, name: str, sql: str, looked_up_by: str
) -> None:
    plan = _plan(database, sql, (1,))
    assert any(looked_up_by in condition for condition in _index_conditions(plan)), (
        f"{name}: no index condition on {looked_up_by} (a scan of the clinic's rows instead)\n{plan}"
    )
