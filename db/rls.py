"""Row-level security: one policy per clinic-owned table, keyed by the
transaction-local setting ``app.clinic_id``.

Fail closed: with the setting unset (NULL) or reset to '' after a transaction,
``NULLIF(...)::bigint`` is NULL and the policy admits no rows.  FORCE makes the
table owner subject to the policy too; the app role is neither owner nor
BYPASSRLS, and only reads the tenant directory.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

APP_ROLE = "medspa_app"
POLICY_NAME = "tenant_isolation"
CURRENT_CLINIC = "NULLIF(current_setting('app.clinic_id', true), '')::bigint"


def enable_tenant_isolation(conn: Connection, tenant_tables: Iterable[str], global_tables: Iterable[str]) -> None:
    conn.execute(
        text(
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                    CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
                END IF;
            END $$"""
        )
    )
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}"))
    for table in tenant_tables:
        conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        conn.execute(text(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"))
        conn.execute(
            text(
                f"CREATE POLICY {POLICY_NAME} ON {table} "
                f"USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC})"
            )
        )
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}"))
    for table in global_tables:
        privileges = "SELECT, INSERT, DELETE" if table == "scheduler_runs" else "SELECT"
        conn.execute(text(f"GRANT {privileges} ON {table} TO {APP_ROLE}"))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}"))


def disable_tenant_isolation(conn: Connection, tenant_tables: Iterable[str]) -> None:
    for table in tenant_tables:
        conn.execute(text(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {table}"))
    # The role may own nothing but grants; they go with the tables. The role itself is left for other databases.
    conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}"))


# The staff console also sets the signed-in staff user transaction-locally (console/store.py), so a user can see
# their own identity and memberships before a clinic is chosen.  Unset means nobody.
CURRENT_STAFF_USER = "NULLIF(current_setting('app.staff_user_id', true), '')::bigint"
