"""the transcript copies migration 0018 meant to delete, deleted for every owner; ``messages.direction`` checked

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 00:20:00

Why: 0018 deleted the stored transcript copies (``direction = 'internal'``: the assistant's tool call, the tool's
result and a second copy of the final answer) with a plain ``DELETE`` — but ``messages`` is under ``FORCE ROW
LEVEL SECURITY`` and no ``app.clinic_id`` is set in a migration, so for an owner that is not a superuser (a
managed Postgres's usual migration role) the policy admitted no rows and the delete removed nothing.  The history
a turn reads (``worker/conversations/snapshot.py``: every ``user``/``assistant``/``staff`` row) then kept showing
the model each old answer twice.  The delete runs again here with the policy lifted for this transaction only
(as 0020's copy does), and a check constraint makes the vocabulary the code writes — ``inbound`` and
``outbound`` — the only one the table takes, so a leftover copy cannot go unnoticed: the constraint would not
validate.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE messages NO FORCE ROW LEVEL SECURITY")
    op.execute("DELETE FROM messages WHERE direction NOT IN ('inbound', 'outbound')")
    op.execute("ALTER TABLE messages FORCE ROW LEVEL SECURITY")
    op.create_check_constraint(op.f("ck_messages_direction_valid"), "messages", "direction IN ('inbound', 'outbound')")


def downgrade() -> None:
    # The deleted copies are not restored: no reader used them since 0018, and they repeated other rows.
    op.drop_constraint(op.f("ck_messages_direction_valid"), "messages", type_="check")
