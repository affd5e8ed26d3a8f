"""The tenant directory's statements every path shares, in psycopg's dialect (``%s``) and free of SQLAlchemy, so
the thin webhook app imports them too: scope a transaction to one clinic (what row-level security reads), and
list the clinics (cross-clinic jobs iterate them, one tenant scope each; there is no bypass role).  SQLAlchemy
sessions use ``db.engine.set_clinic`` and ``Database.clinic_ids``."""

from __future__ import annotations

SET_CLINIC_SQL = "SELECT set_config('app.clinic_id', %s, true)"
CLINIC_IDS_SQL = "SELECT id FROM clinics ORDER BY id"
