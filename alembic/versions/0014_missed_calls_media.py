"""missed_calls and message_media: missed-call text-backs and the photos patients text

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 07:00:00

- ``missed_calls``: one row per unanswered call (``call_sid`` unique per clinic: Twilio's retries and the Dial
  action of the same call never text twice) with its outcome — texted (``outbox_id``) or skipped and why (opted
  out, the per-number daily cap, no caller id).  The call itself is recorded first as an ``inbox_events`` row
  (source ``voice``) by the webhook, so an acknowledged call is never lost.
- ``message_media``: the media of an inbound MMS, linked to its message; fetched from the provider and stored by a
  worker (``status`` pending → stored | failed, ``storage_key`` in the media store).

Both are clinic data: forced row-level security like every tenant table; no foreign key to ``clinics`` (the
high-volume tables' rule, migration 0002).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC, POLICY_NAME

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("message_media", "missed_calls")


def upgrade() -> None:
    op.create_table(
        "message_media",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("provider_url", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=100), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("storage_key", sa.String(length=300), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending','stored','failed')", name=op.f("ck_message_media_status_valid")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_media_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_media_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_media")),
        sa.UniqueConstraint(
            "clinic_id", "inbox_id", "position", name=op.f("uq_message_media_clinic_id_inbox_id_position")
        ),
    )
    op.create_index("ix_message_media_message", "message_media", ["message_id"], unique=False)
    op.create_index("ix_message_media_conversation", "message_media", ["conversation_id", "id"], unique=False)
    op.create_index(
        "ix_message_media_pending",
        "message_media",
        ["clinic_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "missed_calls",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=False),
        sa.Column("from_e164", sa.String(length=64), nullable=False),
        sa.Column("to_e164", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skip_reason", sa.String(length=32), server_default="", nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=True),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_calls")),
        sa.UniqueConstraint("clinic_id", "call_sid", name=op.f("uq_missed_calls_clinic_id_call_sid")),
    )
    op.create_index("ix_missed_calls_caller", "missed_calls", ["clinic_id", "from_e164", "created_at"], unique=False)
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY_NAME} ON {table} "
            f"USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")


def downgrade() -> None:
    for table in _TABLES:
        op.drop_table(table)
