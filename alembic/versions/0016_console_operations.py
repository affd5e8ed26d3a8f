"""console operations: the clinic settings an owner edits from the console, and how many other clinics a staff
member belongs to

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 07:00:00

Why functions rather than grants:

- ``clinics`` is the read-only tenant directory for the app role (a webhook must find its clinic before it knows
  it).  The console edits three of its columns (opening hours, closed dates, policies) for the clinic of the
  request: ``medspa_set_clinic_settings`` updates exactly those, of exactly the clinic in ``app.clinic_id``
  (unset: nothing).  The values were validated by ``worker.clinic_config`` before the call.
- ``staff_memberships`` is clinic data under forced row-level security, so no clinic can see where else a person
  works.  An owner may not disable, or reset the password of, an account that also works at another clinic (that
  would reach into the other clinic: a reset password signs in there too).  ``medspa_staff_other_clinics`` answers
  the one question needed — how many *other* clinics — for a member of the current clinic only (else NULL).  It
  runs as the table owner, which forced RLS still binds, so it names the member in ``app.staff_user_id`` for the
  one count (the policy's own-memberships branch) and puts the caller's value back.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        f"""CREATE FUNCTION medspa_set_clinic_settings(p_business_hours jsonb, p_holidays jsonb, p_policies jsonb)
           RETURNS bigint
           LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
               UPDATE clinics SET business_hours = p_business_hours, holidays = p_holidays, policies = p_policies
               WHERE id = {CURRENT_CLINIC}
               RETURNING id
           $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION medspa_set_clinic_settings(jsonb, jsonb, jsonb) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION medspa_set_clinic_settings(jsonb, jsonb, jsonb) TO {APP_ROLE}")

    op.execute(
        f"""CREATE FUNCTION medspa_staff_other_clinics(p_staff_user_id bigint)
           RETURNS integer
           LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
           DECLARE
               v_clinic bigint := {CURRENT_CLINIC};
               v_caller text := current_setting('app.staff_user_id', true);
               v_count integer;
           BEGIN
               IF v_clinic IS NULL OR NOT EXISTS (
                   SELECT 1 FROM staff_memberships WHERE staff_user_id = p_staff_user_id AND clinic_id = v_clinic
               ) THEN
                   RETURN NULL;
               END IF;
               PERFORM set_config('app.staff_user_id', p_staff_user_id::text, true);
               SELECT count(*) INTO v_count FROM staff_memberships
               WHERE staff_user_id = p_staff_user_id AND clinic_id <> v_clinic;
               PERFORM set_config('app.staff_user_id', coalesce(v_caller, ''), true);
               RETURN v_count;
           END
           $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION medspa_staff_other_clinics(bigint) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION medspa_staff_other_clinics(bigint) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS medspa_staff_other_clinics(bigint)")
    op.execute("DROP FUNCTION IF EXISTS medspa_set_clinic_settings(jsonb, jsonb, jsonb)")
