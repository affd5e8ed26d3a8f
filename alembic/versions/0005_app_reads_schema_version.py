"""app role reads the schema version: pods wait for the migration with the app role's credentials

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00

Why: on Kubernetes the migration runs as a Job (owner role) and every other pod waits in an init container
(``medspa db wait``) until the schema is at the head its image expects.  Those pods hold only the app role's
credentials, by design: read access to ``alembic_version`` is all they need to know whether to start.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("GRANT SELECT ON alembic_version TO medspa_app")


def downgrade() -> None:
    op.execute("REVOKE SELECT ON alembic_version FROM medspa_app")
