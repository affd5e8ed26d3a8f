"""turn fence: a statement-level error when a turn's fenced UPDATE matched nothing

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:10:00

Why: a turn's commit is sent in one round trip with its COMMIT (psycopg pipeline mode).  The fenced UPDATE
(``WHERE version = :v AND lease_owner = :me``) must then abort the transaction by itself when a newer worker
owns the conversation, so the turn's messages and outbox rows queued after it are rolled back with it.
``medspa_stale_turn`` raises SQLSTATE MS001, which the worker maps to ``StaleTurn``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """CREATE FUNCTION medspa_stale_turn(conversation_id bigint) RETURNS bigint
           LANGUAGE plpgsql VOLATILE AS $$
           BEGIN
               RAISE EXCEPTION 'stale turn: conversation % moved on (lease taken over)', conversation_id
                   USING ERRCODE = 'MS001';
           END $$"""
    )
    op.execute("GRANT EXECUTE ON FUNCTION medspa_stale_turn(bigint) TO medspa_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS medspa_stale_turn(bigint)")
