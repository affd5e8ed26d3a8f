"""no index on the provider's message id of outbox rows: nothing looks a row up by it

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 01:00:00

Why (measured: ``scripts/bench.py --only pipeline --wal-profile``): every SMS the outbox sent wrote an entry in
``ix_outbox_provider_message_id`` — the provider's 34-character id, ~100 B of WAL a text and an index that grows
with every message ever sent — yet no statement reads the outbox by that id: a delivery status callback names its
row by the ``outbox_id`` in its callback URL (``worker/outbox/sender.py``, ``webhooks/twilio.py``), and
reconciling a send whose outcome is unknown asks the provider for what it sent (``find_sent``), not the table.
The column stays: it is the row's link to the provider's records.  An operator's one-off lookup by a provider's
id (``SELECT … FROM outbox WHERE provider_message_id = …``) now reads the table instead of an index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_provider_message_id", table_name="outbox")


def downgrade() -> None:
    op.create_index(
        "ix_outbox_provider_message_id",
        "outbox",
        ["provider_message_id"],
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
