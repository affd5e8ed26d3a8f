"""the dedupe key of an automation text that names a visit's time carries the visit's start

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 02:00:00

Why: the booking confirmation, the reminders (``reminder_24h``, ``reminder_2h``, …) and the deposit reminder were
keyed per appointment (``auto:reminder_24h:appt:42``), and the scan skips a visit whose key exists whatever became
of that text — so a visit moved after its reminder went out (or while it was queued, when the move withdrew it)
never got one for its new time.  Their key now carries the start (``auto:reminder_24h:appt:42:at:20270408T190000Z``,
``worker.automations.rules.dedupe_key``): a moved visit is due them again, an unchanged one still finds its key.

The rows already written for visits still ahead are rekeyed here with their visit's start, or the first scan after
the deploy would find no key for them and text every one of those patients a second time.  (A visit moved before
this revision keeps the old behaviour once: its row is rekeyed with the start it has now.)  Visits that are over
are left alone: no scan looks for their keys again.  ``FORCE ROW LEVEL SECURITY`` would hide every row from a
migration role that owns the tables but is not a superuser, so the policies are lifted for this transaction only.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ``rules.names_the_time`` as it stands at this revision (a migration does not follow later code).
_NAMES_THE_TIME = (
    "(o.meta->>'automation' IN ('confirmation', 'deposit_reminder') OR starts_with(o.meta->>'automation', 'reminder_'))"
)
_REKEY = f"""
UPDATE outbox o
SET dedupe_key = o.dedupe_key || ':at:' || to_char(a.starts_at AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')
FROM appointments a
WHERE o.kind = 'automation' AND {_NAMES_THE_TIME}
  AND a.clinic_id = o.clinic_id AND a.id::text = o.meta->>'appointment_id' AND a.starts_at > now()
  AND o.dedupe_key = 'auto:' || (o.meta->>'automation') || ':appt:' || a.id
"""
# Back to one key per kind and appointment: the newest row of a visit takes it, unless a row holds it already (the
# older rows keep a key the earlier code never looks for).
_UNKEY = """
UPDATE outbox o SET dedupe_key = k.legacy
FROM (SELECT DISTINCT ON (clinic_id, legacy) id, clinic_id, legacy
      FROM (SELECT id, clinic_id, regexp_replace(dedupe_key, ':at:[0-9]{8}T[0-9]{6}Z$', '') AS legacy
            FROM outbox WHERE kind = 'automation' AND dedupe_key ~ '^auto:.+:appt:[0-9]+:at:[0-9]{8}T[0-9]{6}Z$') s
      ORDER BY clinic_id, legacy, id DESC) k
WHERE o.id = k.id AND NOT EXISTS (SELECT 1 FROM outbox t WHERE t.clinic_id = k.clinic_id AND t.dedupe_key = k.legacy)
"""


def _without_forced_policies(statement: str) -> None:
    op.execute("ALTER TABLE outbox NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE appointments NO FORCE ROW LEVEL SECURITY")
    op.execute(statement)
    op.execute("ALTER TABLE appointments FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE outbox FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    _without_forced_policies(_REKEY)


def downgrade() -> None:
    _without_forced_policies(_UNKEY)
