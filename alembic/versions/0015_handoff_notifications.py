"""handoff notifications: alerts, the notifications that carried them, a clinic's notification settings

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 07:00:00

Why: staff hear about every handoff (not only urgent ones), batched and outside their quiet hours.
``handoff_alerts`` is written in the same commit that hands a conversation off (the turn's fenced commit, a
quarantine), so an alert exists exactly when the handoff does; the notification actor groups pending alerts into
``handoff_notifications`` (texts through the outbox, an email).  ``handoff_notify_settings`` holds a clinic's
on-call numbers and addresses, staff quiet hours and batching window.  All three are clinic data under forced
row-level security.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC, POLICY_NAME

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("handoff_alerts", "handoff_notifications", "handoff_notify_settings")


def upgrade() -> None:
    op.create_table(
        "handoff_alerts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff_alerts")),
        sa.UniqueConstraint("clinic_id", "dedupe_key", name=op.f("uq_handoff_alerts_clinic_id_dedupe_key")),
    )
    op.create_index(
        "ix_handoff_alerts_pending",
        "handoff_alerts",
        ["clinic_id", "id"],
        unique=False,
        postgresql_where=sa.text("batch_id IS NULL"),
    )
    op.create_table(
        "handoff_notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "outbox_ids", postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'::bigint[]"), nullable=False
        ),
        sa.Column("email_to", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
        sa.Column("email_status", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "email_status IN ('none','pending','sent')", name=op.f("ck_handoff_notifications_email_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_handoff_notifications_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff_notifications")),
    )
    op.create_index("ix_handoff_notifications_clinic", "handoff_notifications", ["clinic_id", "id"], unique=False)
    op.create_table(
        "handoff_notify_settings",
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("sms_numbers", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
        sa.Column("emails", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("batch_window_s", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_handoff_notify_settings_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_handoff_notify_settings")),
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY_NAME} ON {table} "
            f"USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE handoff_alerts_id_seq, handoff_notifications_id_seq TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_table("handoff_notify_settings")
    op.drop_index("ix_handoff_notifications_clinic", table_name="handoff_notifications")
    op.drop_table("handoff_notifications")
    op.drop_index("ix_handoff_alerts_pending", table_name="handoff_alerts")
    op.drop_table("handoff_alerts")
