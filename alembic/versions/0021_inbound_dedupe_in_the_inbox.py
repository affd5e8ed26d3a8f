"""one home for "a provider's text is recorded once": the inbox's unique key; ``messages`` drops its copy

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 22:40:00

Why (measured: ``scripts/bench.py --only pipeline --wal-profile``): every inbound text wrote an entry in
``uq_messages_provider_message_id`` (~103 B of WAL a turn, the index's key being the provider's long id) to guard a
rule the inbox already enforces where the text arrives: ``uq_inbox_events_clinic_id_source_provider_event_id``
refuses a provider's retry before the 2xx, and an inbox event is attached to its conversation once — under the
row lock of the sender's backlog (``FOR UPDATE``, re-checked as ``status = 'received'`` after any wait) and marked
``processed`` in the same transaction (``worker/conversations/attach.py``).  No statement reads messages by the
provider's id.  The column stays (it names the text at the provider).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("uq_messages_provider_message_id", table_name="messages")


def downgrade() -> None:
    op.create_index(
        "uq_messages_provider_message_id",
        "messages",
        ["clinic_id", "channel", "provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
