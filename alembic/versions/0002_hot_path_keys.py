"""hot path: no clinic_id foreign keys or lone clinic_id indexes on high-volume tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:45:00

Why (measured with the pipeline benchmark, see db/models.py ``_clinic_column``):
- a foreign key from an append table to ``clinics`` locks the clinic's single row FOR KEY SHARE on every
  insert; concurrent lockers share a MultiXact rewritten per locker, which every writer of the clinic queues
  on (about 25 such checks per turn);
- an index on ``clinic_id`` alone narrows nothing, costs a write per insert, and — the row-level-security
  predicate ``clinic_id = current_setting(...)`` being indexable — the planner picked it over the right index
  whenever statistics lagged behind a growing table (seen: the history query scanning a clinic's messages).
Row-level security still pins ``clinic_id`` to the transaction's clinic on every write (WITH CHECK); the rows
still hang off conversations, turns and campaigns, whose foreign keys cascade.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Append tables whose clinic_id is no longer a foreign key (and no longer indexed on its own).
UNKEYED = ("campaign_recipients", "inbox_events", "messages", "outbox", "tool_calls", "turns")
# Tables that keep the foreign key but lose the lone clinic_id index (a composite index leads with it).
UNINDEXED = ("appointments", "clients", "conversations", "payments")


def upgrade() -> None:
    for table in UNKEYED:
        op.drop_constraint(f"fk_{table}_clinic_id_clinics", table, type_="foreignkey")
    for table in UNKEYED + UNINDEXED:
        op.drop_index(f"ix_{table}_clinic_id", table_name=table)


def downgrade() -> None:
    for table in UNKEYED + UNINDEXED:
        op.create_index(f"ix_{table}_clinic_id", table, ["clinic_id"], unique=False)
    for table in UNKEYED:
        op.create_foreign_key(
            f"fk_{table}_clinic_id_clinics", table, "clinics", ["clinic_id"], ["id"], ondelete="CASCADE"
        )
