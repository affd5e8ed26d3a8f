"""imported history: amount charged and import marker on appointments, birth date on clients, consent provenance

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:00:00

Why: a clinic brings its client list and its past visits (``medspa clients import``, ``medspa appointments
import-visits``), so that campaigns can reach its existing patients and segment them on last visit and spend.
- ``appointments.amount_charged_cents``: what the visit actually cost the patient (NULL: not recorded).  Spend
  segments sum it, falling back to the service's list price where it is NULL (a per-unit list price says little
  about a visit's total);
- ``appointments.imported_at``: the visit came from an import, not from the live schedule.  Automations meant for
  a visit that just happened (aftercare, review request, no-show follow-up) never fire for it, however recent;
- ``clients.birth_date``: the client list's date of birth (client lists carry it; staff look patients up by it);
- ``consent_events.given_at`` / ``given_via``: when and where the patient gave consent, when that was before it
  was recorded here (an import carries the original system's provenance; ``created_at`` stays the recording
  time).  An imported opt-in without both, and without its wording, is refused by ``ConsentRecord``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("appointments", sa.Column("amount_charged_cents", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_appointments_amount_charged_non_negative"),
        "appointments",
        "amount_charged_cents IS NULL OR amount_charged_cents >= 0",
    )
    op.add_column("appointments", sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("clients", sa.Column("birth_date", sa.Date(), nullable=True))
    op.add_column("consent_events", sa.Column("given_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("consent_events", sa.Column("given_via", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("consent_events", "given_via")
    op.drop_column("consent_events", "given_at")
    op.drop_column("clients", "birth_date")
    op.drop_column("appointments", "imported_at")
    op.drop_constraint(op.f("ck_appointments_amount_charged_non_negative"), "appointments", type_="check")
    op.drop_column("appointments", "amount_charged_cents")
