"""waitlist: entries, openings (recorded by a trigger on appointments) and offers

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 07:00:00

Why a trigger records the openings: a slot opens on many paths (the agent's cancel and reschedule tools, staff
``appointments cancel|move``, a deposit hold that expires, a block deleted or cancelled, a visit marked a late
cancellation) and more will come.  Hooking each of them would copy one rule into every path; the trigger sees
every one of them, in the very transaction that frees the time, and writes one ``waitlist_openings`` row (the
provider and the freed range).  The waitlist job (``worker/waitlist``) then decides who is offered what.  The
trigger runs as the app role inside the tenant scope of the change, so row-level security holds as everywhere.

- ``waitlist_entries``: who waits for what (service; a provider or anyone; day/time windows as JSON, see
  ``domain/waitlist.py``); one active entry per client and service.
- ``waitlist_openings``: a freed range on one provider, ``new`` → ``offering`` → ``filled`` | ``closed``.
- ``waitlist_offers``: one text to one waitlister about one opening, with the hold's expiry; ``held`` →
  ``lapsed`` (hold over: the next person is offered) | ``accepted`` | ``taken`` (somebody else booked it) |
  ``declined`` (they said no: the next person is offered) | ``skipped`` (the person could not be texted).  ``answered_at`` set once their reply was handled.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC, POLICY_NAME

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("waitlist_entries", "waitlist_openings", "waitlist_offers")


def upgrade() -> None:
    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("service_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "windows", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("date_from", sa.Date(), nullable=True),
        sa.Column("date_to", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("appointment_id", sa.BigInteger(), nullable=True),
        sa.Column("removed_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('active','booked','removed')", name=op.f("ck_waitlist_entries_status_valid")),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_waitlist_entries_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_waitlist_entries_client_id_clients"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_waitlist_entries_service_id_services"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_waitlist_entries_provider_id_providers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    op.create_index(
        "ix_waitlist_entries_active", "waitlist_entries", ["clinic_id", "service_id", "created_at"], unique=False
    )
    op.create_index(
        "uq_waitlist_entries_client_service_active",
        "waitlist_entries",
        ["clinic_id", "client_id", "service_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "waitlist_openings",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_appointment_id", sa.BigInteger(), nullable=True),
        sa.Column("cause", sa.String(length=20), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="new", nullable=False),
        sa.Column("appointment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('new','offering','filled','closed')", name=op.f("ck_waitlist_openings_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_waitlist_openings_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_waitlist_openings_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_openings")),
    )
    op.create_index("ix_waitlist_openings_open", "waitlist_openings", ["clinic_id", "status"], unique=False)
    op.create_table(
        "waitlist_offers",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("opening_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("service_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="held", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("appointment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('held','lapsed','accepted','taken','declined','skipped')",
            name=op.f("ck_waitlist_offers_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_waitlist_offers_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["opening_id"],
            ["waitlist_openings.id"],
            name=op.f("fk_waitlist_offers_opening_id_waitlist_openings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["waitlist_entries.id"],
            name=op.f("fk_waitlist_offers_entry_id_waitlist_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_offers")),
        sa.UniqueConstraint("opening_id", "entry_id", name=op.f("uq_waitlist_offers_opening_id_entry_id")),
    )
    op.create_index("ix_waitlist_offers_client", "waitlist_offers", ["clinic_id", "client_id"], unique=False)

    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY_NAME} ON {table} "
            f"USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")

    # Time a live appointment or block held, in the future, that it holds no more: cancelled, expired, a late
    # cancellation, moved (another start, end or provider) or deleted.  Day-of outcomes (completed, no-show,
    # checked in) free nothing anyone could still book.
    op.execute(
        """CREATE FUNCTION medspa_waitlist_record_opening() RETURNS trigger
           LANGUAGE plpgsql AS $$
           BEGIN
               IF OLD.status NOT IN ('pending_deposit', 'booked', 'confirmed') OR OLD.starts_at <= now()
                  -- outside the clinic's own tenant scope (maintenance, a cascade from a deleted clinic): nothing
                  OR NULLIF(current_setting('app.clinic_id', true), '')::bigint IS DISTINCT FROM OLD.clinic_id
                  OR NOT EXISTS (SELECT 1 FROM providers p WHERE p.id = OLD.provider_id) THEN
                   RETURN NULL;
               END IF;
               IF TG_OP = 'UPDATE' THEN
                   IF NEW.status IN ('completed', 'no_show', 'checked_in') THEN
                       RETURN NULL;
                   END IF;
                   IF NEW.status IN ('pending_deposit', 'booked', 'confirmed')
                      AND NEW.provider_id = OLD.provider_id AND NEW.starts_at = OLD.starts_at
                      AND NEW.blocked_until = OLD.blocked_until THEN
                       RETURN NULL;
                   END IF;
               END IF;
               INSERT INTO waitlist_openings (clinic_id, provider_id, starts_at, ends_at, source_appointment_id, cause)
               VALUES (OLD.clinic_id, OLD.provider_id, OLD.starts_at, OLD.blocked_until, OLD.id,
                       CASE WHEN TG_OP = 'DELETE' AND OLD.kind = 'block' THEN 'unblocked'
                            WHEN TG_OP = 'DELETE' THEN 'deleted'
                            WHEN NEW.status IN ('pending_deposit', 'booked', 'confirmed') THEN 'moved'
                            WHEN OLD.kind = 'block' THEN 'unblocked'
                            ELSE left(NEW.status, 20) END);
               RETURN NULL;
           END $$"""
    )
    op.execute(
        """CREATE TRIGGER appointments_waitlist_opening
           AFTER UPDATE OF status, starts_at, blocked_until, provider_id OR DELETE ON appointments
           FOR EACH ROW EXECUTE FUNCTION medspa_waitlist_record_opening()"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS appointments_waitlist_opening ON appointments")
    op.execute("DROP FUNCTION IF EXISTS medspa_waitlist_record_opening()")
    for table in reversed(_TABLES):
        op.drop_table(table)
