"""outbox claim token: a sender re-verifies its claim on a row right before the provider call

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 03:00:00

Why: a claimed row (``sending``) whose sender stalls past the sweeper's deadline (a slow provider, a long
campaign chunk) is marked ``unknown`` and re-claimed by another worker, which reconciles and sends.  The first
sender must then not send it too.  Every claim writes a fresh random ``claim_token``; before each provider call
the sender renews its claim with ``UPDATE ... WHERE status = 'sending' AND claim_token = :mine`` (which also
moves ``claimed_at``, the sweeper's deadline), and skips the row when that matches nothing.  Nullable, no
default: adding it rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claim_token", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "claim_token")
