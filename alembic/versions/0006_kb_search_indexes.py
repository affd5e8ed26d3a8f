"""knowledge search uses its indexes under row-level security

Revision ID: 0006_kb_search
Revises: 0005
Create Date: 2026-12-02 12:00:00

Why (measured with ``scripts/bench.py --only kb_search``, EXPLAIN ANALYZE at 10k and 100k chunks):
- The full-text ranking never used the GIN index on the stored ``tsv``: under row-level security the planner
  may only push a *leakproof* predicate below the policy's check, and ``tsvector @@ tsquery`` is not leakproof,
  so every search scanned all of the clinic's chunks (~10 ms at 10k chunks, ~100 ms at 100k).  Marking the
  built-in function leakproof needs a superuser and is lost by dump/restore.  Instead, one narrow SECURITY
  DEFINER function, ``kb_text_search``, ranks as ``medspa_kb_search``: a NOLOGIN role that may read only
  ``id``, ``clinic_id`` and ``tsv`` of ``kb_chunks``, through a policy of its own, so its query plans like an
  unrestricted one.  The function takes the clinic from the same transaction-local setting as the policies
  (``db.rls.CURRENT_CLINIC``: unset means no rows) and returns chunk ids and ranks only; the text is then read
  by the app role, under row-level security as before.
- The GIN index leads with ``clinic_id`` (``btree_gin``): a clinic's matches come out of the index without
  visiting other clinics' rows, however many more chunks they have.
- The HNSW index keeps pgvector's build parameters (``m = 16``, ``ef_construction = 64``): measured at 100k
  chunks, ``ef_construction = 128`` doubled the build time for +0.01 recall, and rebuilding a large index in a
  migration blocks writes for as long.  The search sets ``hnsw.ef_search`` and ``hnsw.iterative_scan`` per
  query instead (``worker/knowledge.py``).

Without the privileges to create the role (a managed Postgres whose migration role has no CREATEROLE), the
function stays with the migration role: still correct (row-level security applies to the table's owner too,
the tables being FORCEd), just without the index — a warning says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC

revision: str = "0006_kb_search"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_ROLE = "medspa_kb_search"
FUNCTION = "kb_text_search(text, text, integer, integer)"

# Ranks the clinic's chunks for one question.  ``any_word`` is websearch syntax OR-ing the words, ``all_words``
# plain words (AND).  Ranking reads every candidate's tsvector, so the work is capped: chunks that contain all the
# words first (at most ``max_ranked``, usually a few), and only when those are fewer than ``max_hits``, at most
# ``max_ranked`` chunks containing any word — beyond that a word is too common in this knowledge base to tell
# chunks apart, and the vector ranking carries the question.  ROWS 20: what the search asks for (the planner's
# default guess of 1,000 made it hash-join the whole table to fetch the candidates' text).
FUNCTION_SQL = f"""
CREATE FUNCTION kb_text_search(any_word text, all_words text, max_hits integer, max_ranked integer)
RETURNS TABLE (chunk_id bigint, rank real)
LANGUAGE sql STABLE SECURITY DEFINER ROWS 20
SET search_path = pg_catalog, pg_temp
AS $body$
    WITH query AS MATERIALIZED (
        SELECT websearch_to_tsquery('english', any_word) AS any_word,
               plainto_tsquery('english', all_words) AS all_words,
               {CURRENT_CLINIC} AS clinic_id
    ), all_word_hits AS MATERIALIZED (
        SELECT ch.id, ts_rank(ch.tsv, q.any_word) AS rank
        FROM public.kb_chunks ch, query q
        WHERE ch.clinic_id = q.clinic_id AND ch.tsv @@ q.all_words
        LIMIT max_ranked
    ), any_word_hits AS (
        SELECT ch.id, ts_rank(ch.tsv, q.any_word) AS rank
        FROM public.kb_chunks ch, query q
        WHERE (SELECT count(*) FROM all_word_hits) < max_hits
          AND ch.clinic_id = q.clinic_id AND ch.tsv @@ q.any_word
        LIMIT max_ranked
    )
    SELECT id, max(rank) FROM (SELECT * FROM all_word_hits UNION ALL SELECT * FROM any_word_hits) hits
    GROUP BY id ORDER BY 2 DESC, id LIMIT max_hits
$body$
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.drop_index("ix_kb_chunks_tsv", table_name="kb_chunks")
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (clinic_id, tsv)")
    op.execute(FUNCTION_SQL)
    op.execute(f"REVOKE ALL ON FUNCTION {FUNCTION} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {FUNCTION} TO {APP_ROLE}")
    # A subtransaction: without the privileges, none of it happens and the function keeps its owner.
    op.execute(
        f"""DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SEARCH_ROLE}') THEN
                CREATE ROLE {SEARCH_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
            GRANT USAGE ON SCHEMA public TO {SEARCH_ROLE};
            GRANT SELECT (id, clinic_id, tsv) ON kb_chunks TO {SEARCH_ROLE};
            CREATE POLICY kb_text_search ON kb_chunks FOR SELECT TO {SEARCH_ROLE} USING (true);
            -- A new owner needs CREATE on the schema at the moment it takes the function over, not afterwards.
            GRANT CREATE ON SCHEMA public TO {SEARCH_ROLE};
            ALTER FUNCTION {FUNCTION} OWNER TO {SEARCH_ROLE};
            REVOKE CREATE ON SCHEMA public FROM {SEARCH_ROLE};
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'kb_text_search stays with the migration role (%): knowledge search is correct but '
                          'scans each clinic''s chunks instead of using the GIN index', SQLERRM;
        END $$"""
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")
    op.execute("DROP POLICY IF EXISTS kb_text_search ON kb_chunks")
    op.execute(
        f"""DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SEARCH_ROLE}') THEN
                REVOKE ALL ON kb_chunks FROM {SEARCH_ROLE};
                REVOKE ALL ON SCHEMA public FROM {SEARCH_ROLE};
            END IF;
        END $$"""
    )
    # The role is cluster-wide and may serve other databases: it is left, holding nothing here.
    op.drop_index("ix_kb_chunks_tsv", table_name="kb_chunks")
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")
