"""services.contraindications: the clinic's screening rules per treatment

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 04:00:00

Why: a patient who says she is pregnant must not be offered, or booked into, a treatment the clinic does not
give during pregnancy.  Each service carries the clinic's own rules as data: a JSON list of
``{"condition", "position", "suggest"?, "min_age"?, "ingredients"?}`` (see ``domain/screening.py`` and the
clinic YAML schema).  An empty list means no screening rules for that service.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE services ADD COLUMN contraindications jsonb NOT NULL DEFAULT '[]'::jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE services DROP COLUMN contraindications")
