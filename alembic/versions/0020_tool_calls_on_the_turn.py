"""a turn's tool calls on its own row: ``turns.tool_calls`` (jsonb, in call order) replaces the ``tool_calls`` table

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 22:20:00

Why (measured: ``scripts/bench.py --only pipeline --wal-profile``, docs/performance.md *Where a turn's WAL goes*): each tool call
was a row of its own — a heap insert, entries in ``pk_tool_calls`` and ``ix_tool_calls_turn_id``, and the
foreign-key check's key-share lock on the turn's row, ~360 B of WAL for a turn with one tool call, all written in
the same statement as the turn itself.  Nothing reads a tool call without its turn (the audit is per turn), so
the calls are now one jsonb array on the turn: ``[{call_id, name, arguments, result, ok, latency_ms}, ...]``.

Existing calls are copied over.  ``FORCE ROW LEVEL SECURITY`` would hide every row from a migration role that is the
tables' owner but not a superuser, so the copy runs with the policies lifted for this transaction only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from db.rls import enable_tenant_isolation

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COPY_TO_TURNS = """
UPDATE turns u SET tool_calls = c.calls
FROM (SELECT turn_id,
             jsonb_agg(jsonb_build_object('call_id', call_id, 'name', name, 'arguments', arguments, 'result', result,
                                          'ok', ok, 'latency_ms', latency_ms) ORDER BY id) AS calls
      FROM tool_calls GROUP BY turn_id) c
WHERE u.id = c.turn_id
"""
_COPY_FROM_TURNS = """
INSERT INTO tool_calls (clinic_id, turn_id, call_id, name, arguments, result, ok, latency_ms, created_at)
SELECT u.clinic_id, u.id, e.call->>'call_id', e.call->>'name', e.call->'arguments', e.call->'result',
       (e.call->>'ok')::boolean, (e.call->>'latency_ms')::int, u.finished_at
FROM turns u, jsonb_array_elements(u.tool_calls) WITH ORDINALITY AS e(call, n)
ORDER BY u.id, e.n
"""


def upgrade() -> None:
    op.add_column(
        "turns",
        sa.Column(
            "tool_calls", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
    )
    op.execute("ALTER TABLE turns NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tool_calls NO FORCE ROW LEVEL SECURITY")
    op.execute(_COPY_TO_TURNS)
    op.execute("ALTER TABLE turns FORCE ROW LEVEL SECURITY")
    op.drop_index("ix_tool_calls_turn_id", table_name="tool_calls")
    op.drop_table("tool_calls")


def downgrade() -> None:
    # As 0019 left it: no foreign key to clinics and no lone clinic_id index (0002), the tenant policy (0001).
    op.create_table(
        "tool_calls",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("turn_id", sa.BigInteger(), nullable=False),
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("arguments", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["turn_id"], ["turns.id"], name=op.f("fk_tool_calls_turn_id_turns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_calls")),
    )
    op.create_index(op.f("ix_tool_calls_turn_id"), "tool_calls", ["turn_id"], unique=False)
    enable_tenant_isolation(op.get_bind(), ["tool_calls"], [])
    op.execute("ALTER TABLE turns NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tool_calls NO FORCE ROW LEVEL SECURITY")
    op.execute(_COPY_FROM_TURNS)
    op.execute("ALTER TABLE tool_calls FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE turns FORCE ROW LEVEL SECURITY")
    op.drop_column("turns", "tool_calls")
