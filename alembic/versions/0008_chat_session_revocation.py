"""chat sessions: revocable server-side

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:30:00

Why: a chat session token is a signed, stateless credential valid for a day; until now nothing on the server
could end it early (a leaked token, an abusive session, a patient who asks).  The webhook app now checks the
session row on every use — not revoked, not expired, its conversation a chat conversation — and staff revoke
with ``medspa chat-sessions revoke`` (token_id is already unique: the check is one index probe).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE chat_sessions ADD COLUMN revoked_at timestamptz")
    op.execute("ALTER TABLE chat_sessions ADD COLUMN revoked_reason text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE chat_sessions DROP COLUMN revoked_reason")
    op.execute("ALTER TABLE chat_sessions DROP COLUMN revoked_at")
