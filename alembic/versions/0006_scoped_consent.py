"""scoped consent: marketing consent is its own fact; ledger rows carry a scope; 'request' records grant nothing

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:00:00

Why: ``clients.consent_state = 'opted_in'`` used to be both "may get appointment texts" and the marketing gate,
and START set it — so a patient who never agreed to marketing became campaign-eligible after STOP → START.
Transactional and marketing consent are now separate facts:
- ``clients.marketing_consent`` (none | granted | revoked), set only by an explicit marketing grant with its
  wording and source (``domain.compliance.ConsentRecord``); ``consent_state`` keeps the transactional consent
  and the STOP block;
- ``consent_events.scope`` (all | transactional | marketing): STOP and carrier blocks are ``all``;
- ``consent_events.kind`` may be ``request``: someone asked for texts to a number (the web chat handover
  form) — it grants nothing until the number itself confirms.

What existing rows mean (decided conservatively, nothing deleted or rewritten):
- an existing ``opted_in`` client has transactional consent only: ``marketing_consent`` starts at ``none``
  for everyone.  The old rows do not say what the patient agreed to (START's confirmation promised
  appointment texts only; staff recorded "texts"), so nobody is campaign-eligible until an explicit marketing
  grant is recorded (``medspa clients consent ID --opt-in --scope marketing --wording ...``);
- existing ledger rows: opt-outs were STOP / carrier / staff "stop all texts" → scope ``all``; opt-ins and
  help → ``transactional``.  Earlier web-form opt-ins (the chat handover) stay as they were written (the
  ledger is not rewritten), but they no longer count for anything: a number's own consent is read only from
  records the number, its carrier or staff made (``db.consent.number_opted_out``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "clients", sa.Column("marketing_consent", sa.String(length=16), server_default="none", nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_clients_marketing_consent_valid"), "clients", "marketing_consent IN ('none','granted','revoked')"
    )
    op.add_column(
        "consent_events", sa.Column("scope", sa.String(length=16), server_default="transactional", nullable=False)
    )
    op.execute("UPDATE consent_events SET scope = 'all' WHERE kind = 'opt_out'")
    op.create_check_constraint(
        op.f("ck_consent_events_scope_valid"), "consent_events", "scope IN ('all','transactional','marketing')"
    )
    op.drop_constraint(op.f("ck_consent_events_kind_valid"), "consent_events", type_="check")
    op.create_check_constraint(
        op.f("ck_consent_events_kind_valid"), "consent_events", "kind IN ('opt_in','opt_out','help','request')"
    )


def downgrade() -> None:
    # 'request' rows have no meaning before this revision: they granted nothing, and they go.
    op.execute("DELETE FROM consent_events WHERE kind = 'request'")
    op.drop_constraint(op.f("ck_consent_events_kind_valid"), "consent_events", type_="check")
    op.create_check_constraint(
        op.f("ck_consent_events_kind_valid"), "consent_events", "kind IN ('opt_in','opt_out','help')"
    )
    op.drop_constraint(op.f("ck_consent_events_scope_valid"), "consent_events", type_="check")
    op.drop_column("consent_events", "scope")
    op.drop_constraint(op.f("ck_clients_marketing_consent_valid"), "clients", type_="check")
    op.drop_column("clients", "marketing_consent")
