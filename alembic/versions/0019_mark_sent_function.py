"""mark sent in one statement: ``medspa_mark_sent``, the sender's record of what the provider accepted

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 16:50:00

Why (measured: ``scripts/bench.py --only pipeline --statements``, and a perf profile of a worker at 512 turns in
flight): recording a reply as sent was a transaction of its own — BEGIN, ``set_config`` for row-level security,
the UPDATE, COMMIT — four statements for one row, and for a campaign chunk one UPDATE per row besides.  Every
statement costs the worker several releases of the GIL inside psycopg's C pipeline loop (send, flush, poll,
read), and with hundreds of threads each release hands the GIL over: about a third of a busy worker's CPU was
the kernel switching threads.  As one function the record is one statement in autocommit whatever the number of
rows: the UPDATE stays row by row by primary key (the plan the batch join lost, see ``worker/outbox/store.py``),
inside the function.

The function sets ``app.clinic_id`` for its own transaction and refuses to run inside another clinic's: it never
crosses clinics, and row-level security still applies (it runs as the caller).  The statuses it marks from are
``domain.outbox``'s, written in at migration time; ``tests/integration/test_mark_sent_function.py`` checks the
installed function still names them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from db.engine import sql_list
from db.rls import APP_ROLE, CURRENT_CLINIC
from domain.outbox import SENT, SENT_OVER

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "medspa_mark_sent(bigint, bigint[], timestamptz[], text[], integer[])"


def upgrade() -> None:
    op.execute(
        f"""CREATE FUNCTION medspa_mark_sent(p_clinic_id bigint, p_ids bigint[], p_sent_at timestamptz[],
                                            p_provider_ids text[], p_segments integer[])
           RETURNS integer
           LANGUAGE plpgsql VOLATILE AS $$
           DECLARE
               v_current bigint := {CURRENT_CLINIC};
               v_marked integer := 0;
               v_found integer;
           BEGIN
               IF v_current IS NOT NULL AND v_current <> p_clinic_id THEN
                   RAISE EXCEPTION 'medspa_mark_sent: rows of clinic % in a transaction of clinic %',
                       p_clinic_id, v_current USING ERRCODE = '42501';
               END IF;
               PERFORM set_config('app.clinic_id', p_clinic_id::text, true);
               FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
                   UPDATE outbox SET status = '{SENT}', sent_at = coalesce(p_sent_at[i], now()),
                          provider_message_id = coalesce(p_provider_ids[i], provider_message_id),
                          segments = coalesce(p_segments[i], segments)
                   WHERE id = p_ids[i] AND status IN {sql_list(SENT_OVER)};
                   GET DIAGNOSTICS v_found = ROW_COUNT;
                   v_marked := v_marked + v_found;
               END LOOP;
               RETURN v_marked;
           END $$"""
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
