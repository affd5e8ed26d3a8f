"""lean turn rows: no stored transcript copies, partial unique indexes for the columns most rows leave empty

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 12:30:00

Why (measured with the pipeline benchmark's statement profile, ``scripts/bench.py --statements``):
- every turn that used a tool stored its transcript as three ``internal`` message rows — the assistant's tool
  call, the tool's result and the final answer — copies of the turn's ``tool_calls`` rows and of the outbound
  reply: ~1.5 KB of WAL and three inserts per turn, and the final answer read twice in the next turn's history.
  The worker no longer writes them (``worker/conversations/commit.py``); the copies already stored go, and with
  them the two columns only they used (``messages.tool_calls``, ``tool_call_id``).
- ``messages`` kept two unique indexes over columns only inbound rows fill (the provider's message id and the
  inbound sequence): every reply, staff and system message wrote two index entries of NULLs.  Partial indexes
  keep the same uniqueness (NULLs never conflicted) for the rows that have a value.  Likewise the outbox's
  provider-id index (a row has one only once sent).
- ``inbox_events`` kept two partial indexes over the same small set (events still ``received``): the sweeper's
  (by arrival) and the attach's (by sender).  The set is the backlog, so the sweeper reads it through the sender
  index as cheaply; one index entry fewer per inbound text.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM messages WHERE direction = 'internal'")
    op.drop_column("messages", "tool_calls")  # only the transcript rows used them
    op.drop_column("messages", "tool_call_id")
    op.drop_constraint("uq_messages_clinic_id_channel_provider_message_id", "messages", type_="unique")
    op.drop_constraint("uq_messages_conversation_id_inbound_seq", "messages", type_="unique")
    op.create_index(
        "uq_messages_provider_message_id",
        "messages",
        ["clinic_id", "channel", "provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.create_index(
        "uq_messages_inbound_seq",
        "messages",
        ["conversation_id", "inbound_seq"],
        unique=True,
        postgresql_where=sa.text("inbound_seq IS NOT NULL"),
    )
    op.drop_index("ix_outbox_provider_message_id", table_name="outbox")
    op.create_index(
        "ix_outbox_provider_message_id",
        "outbox",
        ["provider_message_id"],
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.drop_index("ix_inbox_events_unprocessed", table_name="inbox_events")


def downgrade() -> None:
    op.create_index(
        "ix_inbox_events_unprocessed",
        "inbox_events",
        ["clinic_id", "received_at"],
        postgresql_where=sa.text("status = 'received'"),
    )
    op.drop_index("ix_outbox_provider_message_id", table_name="outbox")
    op.create_index("ix_outbox_provider_message_id", "outbox", ["provider_message_id"])
    op.drop_index("uq_messages_inbound_seq", table_name="messages")
    op.drop_index("uq_messages_provider_message_id", table_name="messages")
    op.create_unique_constraint(
        "uq_messages_conversation_id_inbound_seq", "messages", ["conversation_id", "inbound_seq"]
    )
    op.create_unique_constraint(
        "uq_messages_clinic_id_channel_provider_message_id", "messages", ["clinic_id", "channel", "provider_message_id"]
    )
    op.add_column("messages", sa.Column("tool_call_id", sa.String(100), nullable=True))
    op.add_column("messages", sa.Column("tool_calls", postgresql.JSONB(), nullable=True))
