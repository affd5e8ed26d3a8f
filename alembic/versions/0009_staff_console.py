"""staff console: staff users, clinic memberships, browser sessions, sign-in attempts, audit log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:00:00

Why each table sits where it does (the app role must never read another clinic's data):

- ``staff_memberships`` and ``staff_audit_log`` are clinic data: forced row-level security like every tenant
  table.  A membership is also visible to the user it belongs to (``app.staff_user_id``), so the console can
  list "my clinics" before a clinic is chosen; it can only be written inside its clinic.  The audit log is
  append-only for the app role (no UPDATE/DELETE grant).
- ``staff_users``: identity precedes tenancy (a person may work at several clinics and signs in before choosing
  one), so it has no ``clinic_id``.  Row-level security keeps it narrow all the same: a row is visible to its own
  user and inside a clinic the user belongs to.  Sign-in (by email, before anyone is known) goes through one
  SECURITY DEFINER function that returns the one matching row — the app role cannot list staff.  Not FORCEd:
  the function runs as the table owner, which must see the row it looks up.
- ``staff_sessions`` and ``staff_login_attempts`` hold no clinic data (token hashes, user ids, an HMAC of the
  typed email, an IP address) and are looked up before a user or clinic is known: global, like
  ``scheduler_runs``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC, CURRENT_STAFF_USER, POLICY_NAME

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
    )
    op.create_index("uq_staff_users_email_lower", "staff_users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "staff_memberships",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("staff_user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "role IN ('owner','manager','front_desk','provider')", name=op.f("ck_staff_memberships_role_valid")
        ),
        sa.CheckConstraint(
            "(role = 'provider') = (provider_id IS NOT NULL)", name=op.f("ck_staff_memberships_provider_link")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_staff_memberships_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_staff_memberships_provider_id_providers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_memberships_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_memberships")),
        sa.UniqueConstraint("staff_user_id", "clinic_id", name=op.f("uq_staff_memberships_staff_user_id_clinic_id")),
    )
    op.create_index(op.f("ix_staff_memberships_clinic_id"), "staff_memberships", ["clinic_id"], unique=False)
    op.create_index(op.f("ix_staff_memberships_staff_user_id"), "staff_memberships", ["staff_user_id"], unique=False)
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_user_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("auth_method", sa.String(length=16), nullable=False),
        sa.Column("second_factor_pending", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("ip", sa.String(length=64), server_default="", nullable=False),
        sa.Column("user_agent", sa.String(length=300), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_sessions_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    op.create_index(op.f("ix_staff_sessions_staff_user_id"), "staff_sessions", ["staff_user_id"], unique=False)
    op.create_table(
        "staff_login_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_login_attempts")),
    )
    op.create_index(
        "ix_staff_login_attempts_account", "staff_login_attempts", ["account_key", "created_at"], unique=False
    )
    op.create_index("ix_staff_login_attempts_ip", "staff_login_attempts", ["ip", "created_at"], unique=False)
    op.create_table(
        "staff_audit_log",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("staff_user_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=320), server_default="", nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), server_default="", nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "detail", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("ip", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_staff_audit_log_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_audit_log_staff_user_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_audit_log")),
    )
    op.create_index("ix_staff_audit_log_clinic_id", "staff_audit_log", ["clinic_id", "id"], unique=False)
    op.create_index("ix_staff_audit_log_client", "staff_audit_log", ["clinic_id", "client_id"], unique=False)

    # ---------------------------------------------------------------- row-level security and grants
    for table in ("staff_memberships", "staff_audit_log"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {POLICY_NAME} ON staff_memberships "
        f"USING (clinic_id = {CURRENT_CLINIC} OR staff_user_id = {CURRENT_STAFF_USER}) "
        f"WITH CHECK (clinic_id = {CURRENT_CLINIC})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON staff_memberships TO {APP_ROLE}")
    op.execute(
        f"CREATE POLICY {POLICY_NAME} ON staff_audit_log "
        f"USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC})"
    )
    op.execute(f"GRANT SELECT, INSERT ON staff_audit_log TO {APP_ROLE}")

    op.execute("ALTER TABLE staff_users ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"""CREATE POLICY {POLICY_NAME} ON staff_users
            USING (id = {CURRENT_STAFF_USER}
                   OR EXISTS (SELECT 1 FROM staff_memberships m
                              WHERE m.staff_user_id = staff_users.id AND m.clinic_id = {CURRENT_CLINIC}))
            WITH CHECK (true)"""
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON staff_users TO {APP_ROLE}")
    # Sign-in: the one row with this email (case-insensitive), whoever asks.  Listing staff is impossible.
    op.execute(
        """CREATE FUNCTION medspa_staff_sign_in(p_email text)
           RETURNS TABLE (id bigint, email varchar, display_name varchar, password_hash text, totp_secret text,
                          totp_last_step bigint, disabled_at timestamptz)
           LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
               SELECT u.id, u.email, u.display_name, u.password_hash, u.totp_secret, u.totp_last_step, u.disabled_at
               FROM staff_users u WHERE lower(u.email) = lower(p_email)
           $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION medspa_staff_sign_in(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION medspa_staff_sign_in(text) TO {APP_ROLE}")

    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON staff_sessions TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON staff_login_attempts TO {APP_ROLE}")
    for sequence in (
        "staff_users_id_seq",
        "staff_memberships_id_seq",
        "staff_sessions_id_seq",
        "staff_login_attempts_id_seq",
        "staff_audit_log_id_seq",
    ):
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS medspa_staff_sign_in(text)")
    op.execute(f"DROP POLICY IF EXISTS {POLICY_NAME} ON staff_users")  # it reads staff_memberships
    op.drop_table("staff_audit_log")
    op.drop_table("staff_login_attempts")
    op.drop_table("staff_sessions")
    op.drop_table("staff_memberships")
    op.drop_table("staff_users")
