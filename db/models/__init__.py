"""Tables (SQLAlchemy 2 typed models).

Every clinic-owned table carries ``clinic_id`` and is protected by row-level
security (see ``db/rls.py`` and the initial migration).  ``clinics`` and
``clinic_phone_numbers`` are the tenant directory (read-only to the app role) so
that a webhook can find the clinic before it knows it; ``scheduler_runs`` is
global bookkeeping for the scheduler.

Modules by feature: ``base`` (the declarative base, naming convention, column helpers), ``clinics`` (the
tenant directory and catalogue), ``patients`` (clients, consent, appointments, payments), ``conversations``,
``outbound`` (outbox, automations, campaigns), ``knowledge`` and ``staff``.  Importing this package
registers every table on ``Base.metadata``.
"""

from __future__ import annotations

from db.models import clinics, conversations, knowledge, outbound, patients, staff
from db.models.base import EMBEDDING_DIMENSIONS, Base

# Tables without clinic-scoped RLS (see the docstring above).
# staff_users, staff_sessions, staff_login_attempts: identity precedes tenancy (see StaffUser and migration 0009).
GLOBAL_TABLES = frozenset(
    {"clinics", "clinic_phone_numbers", "scheduler_runs", "staff_users", "staff_sessions", "staff_login_attempts"}
)
TENANT_TABLES = tuple(sorted(name for name in Base.metadata.tables if name not in GLOBAL_TABLES))

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "GLOBAL_TABLES",
    "TENANT_TABLES",
    "Base",
    "clinics",
    "conversations",
    "knowledge",
    "outbound",
    "patients",
    "staff",
]
