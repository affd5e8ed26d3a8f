"""visit lifecycle: day-of statuses (checked in, late cancelled), what a visit came to, fees on a saved card

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 07:00:00

Why: the front desk records what happened to each visit (``medspa appointments check-in|complete|no-show|
late-cancel``, rules in ``domain/visits.py``), so that aftercare, review requests, no-show follow-ups and the
spend and last-visit campaign segments run on live data, and a clinic's no-show / late-cancellation fee can be
charged to the card the patient agreed to save at booking.
- ``appointments.status`` gains ``checked_in`` and ``late_cancelled``; a checked-in visit still holds its
  provider, so the exclusion constraint covers it (recreated with the wider predicate);
- ``appointments.checked_in_at``, ``outcome_at`` (completed / no-show / late cancel recorded), ``outcome_by``
  (who: staff or the end-of-day job) and ``visit_summary`` (what was done; the amount charged is
  ``amount_charged_cents`` from 0010);
- ``appointments.fee_*``: a fee owed under the clinic's policy and its off-session charge (``due`` → ``charged``
  | ``failed`` | ``requires_action``), with the Stripe PaymentIntent id — the charge actor's durable intent;
- ``payments.customer_id``, ``payment_method_id``, ``card_saved_at``, ``card_terms``: the card the patient
  saved at deposit time (Checkout ``setup_future_usage=off_session``) and the wording they agreed to.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = "'pending_deposit','booked','confirmed','completed','cancelled','no_show','expired'"
_NEW_STATUSES = _OLD_STATUSES + ",'checked_in','late_cancelled'"
_OLD_OCCUPYING = "'pending_deposit','booked','confirmed'"
_NEW_OCCUPYING = _OLD_OCCUPYING + ",'checked_in'"


def _overlap(statuses: str) -> str:
    return (
        "ALTER TABLE appointments ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist "
        f"(provider_id WITH =, during WITH &&) WHERE (status IN ({statuses}))"
    )


def upgrade() -> None:
    op.execute("ALTER TABLE appointments DROP CONSTRAINT ck_appointments_status_valid")
    op.execute(
        f"ALTER TABLE appointments ADD CONSTRAINT ck_appointments_status_valid CHECK (status IN ({_NEW_STATUSES}))"
    )
    op.execute("ALTER TABLE appointments DROP CONSTRAINT appointments_no_overlap")
    op.execute(_overlap(_NEW_OCCUPYING))
    op.execute(
        """ALTER TABLE appointments
             ADD COLUMN checked_in_at timestamptz,
             ADD COLUMN outcome_at timestamptz,
             ADD COLUMN outcome_by varchar(64) NOT NULL DEFAULT '',
             ADD COLUMN visit_summary text NOT NULL DEFAULT '',
             ADD COLUMN fee_kind varchar(16),
             ADD COLUMN fee_cents integer,
             ADD COLUMN fee_status varchar(16),
             ADD COLUMN fee_payment_intent_id varchar(255),
             ADD COLUMN fee_error text NOT NULL DEFAULT ''"""
    )
    op.execute(
        """ALTER TABLE appointments ADD CONSTRAINT ck_appointments_fee_valid CHECK (
             (fee_status IS NULL AND fee_cents IS NULL AND fee_kind IS NULL)
             OR (fee_status IN ('due','charged','failed','requires_action') AND fee_cents > 0
                 AND fee_kind IN ('no_show','late_cancel')))"""
    )
    op.execute(
        """ALTER TABLE payments
             ADD COLUMN customer_id varchar(255),
             ADD COLUMN payment_method_id varchar(255),
             ADD COLUMN card_saved_at timestamptz,
             ADD COLUMN card_terms text NOT NULL DEFAULT ''"""
    )


def downgrade() -> None:
    op.execute(
        """ALTER TABLE payments DROP COLUMN card_terms, DROP COLUMN card_saved_at, DROP COLUMN payment_method_id,
             DROP COLUMN customer_id"""
    )
    op.execute("ALTER TABLE appointments DROP CONSTRAINT ck_appointments_fee_valid")
    op.execute(
        """ALTER TABLE appointments DROP COLUMN fee_error, DROP COLUMN fee_payment_intent_id, DROP COLUMN fee_status,
             DROP COLUMN fee_cents, DROP COLUMN fee_kind, DROP COLUMN visit_summary, DROP COLUMN outcome_by,
             DROP COLUMN outcome_at, DROP COLUMN checked_in_at"""
    )
    op.execute("UPDATE appointments SET status = 'booked' WHERE status = 'checked_in'")
    op.execute("UPDATE appointments SET status = 'cancelled' WHERE status = 'late_cancelled'")
    op.execute("ALTER TABLE appointments DROP CONSTRAINT appointments_no_overlap")
    op.execute(_overlap(_OLD_OCCUPYING))
    op.execute("ALTER TABLE appointments DROP CONSTRAINT ck_appointments_status_valid")
    op.execute(
        f"ALTER TABLE appointments ADD CONSTRAINT ck_appointments_status_valid CHECK (status IN ({_OLD_STATUSES}))"
    )
