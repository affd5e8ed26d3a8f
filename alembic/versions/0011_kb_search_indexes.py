"""knowledge search uses its indexes under row-level security, and bounds its work on large knowledge bases

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:00:00

Why (measured with ``scripts/bench.py --only kb_search``, EXPLAIN ANALYZE at 10k and 100k chunks):
- The full-text ranking never used the GIN index on the stored ``tsv``: under row-level security the planner
  may only push a *leakproof* predicate below the policy's check, and ``tsvector @@ tsquery`` is not leakproof,
  so every search scanned all of the clinic's chunks (~10 ms at 10k chunks, ~100 ms at 100k).  Marking the
  built-in function leakproof needs a superuser and is lost by dump/restore.  Instead, one narrow SECURITY
  DEFINER function, ``kb_text_search``, ranks as ``medspa_kb_search``: a NOLOGIN role that may read only
  ``id``, ``clinic_id`` and ``tsv`` of ``kb_chunks`` (and the word counts below), through policies of its own,
  so its query plans like an unrestricted one.  The function takes the clinic from the same transaction-local
  setting as the policies (``db.rls.CURRENT_CLINIC``: unset means no rows) and returns chunk ids and ranks
  only; the text is then read by the app role, under row-level security as before.
- The GIN index leads with ``clinic_id`` (``btree_gin``): a clinic's matches come out of the index without
  visiting other clinics' rows, however many more chunks they have; ``fastupdate = off``: knowledge-base writes
  are rare, and a pending list would be scanned by every search until vacuum merged it.
- A chunk row (text, tsvector, a 384-float embedding: ~3 KB) stays whole in its page (``toast_tuple_target``
  4080; the default 2 KB moved every embedding out of line): reading the embeddings of a clinic's chunks to rank
  them exactly, the planner's choice for a small clinic, took 2.4x as long through TOAST (10k chunks: 19.5 ms
  against 8 ms).  Rows written before this migration move when rewritten (re-ingest, VACUUM FULL).
- Ranking reads each candidate's tsvector, and a word in a third of 100k chunks makes 30,000 candidates (an
  8 ms bitmap before any ranking).  ``kb_lexeme_counts`` (per clinic and word, how many chunks contain it; kept
  by statement triggers on ``kb_chunks``) lets the any-word ranking leave out words too common to tell chunks
  apart, as inverse document frequency would weigh them down anyway.
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

import sqlalchemy as sa

from alembic import op
from db.rls import APP_ROLE, CURRENT_CLINIC, enable_tenant_isolation

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_ROLE = "medspa_kb_search"
FUNCTION = "kb_text_search(text, text, integer, integer, integer)"

# Ranks the clinic's chunks for one question.  ``any_word_query`` is websearch syntax OR-ing the words,
# ``all_words_query`` the plain words.  Ranking reads every candidate's tsvector, so the work is bounded:
# 1. chunks containing all the words, at most ``max_ranked`` (usually a few: the best candidates);
# 2. only when those are fewer than ``max_hits``: at most ``max_ranked`` chunks containing any of the question's
#    rarer words — rarest first, as long as their chunks add up to at most ``max_postings`` (and at least one
#    word, at least ``max_hits`` chunks' worth).  A word beyond that is in so many of this clinic's chunks that
#    it can't tell them apart; the vector ranking carries such questions.  On a small knowledge base no word is
#    left out.
# Every candidate is ranked against all the words.  The clinic and the queries are scan conditions (a stable
# expression, sub-selects), not joins to a CTE: in the generic plan cached after a few calls, a joined clinic
# became a filter after the index (measured: 3,862 rows of another clinic read and dropped per search).
# ROWS 20: what the search asks for (the planner's default guess of 1,000 made it hash-join the whole table to
# fetch the candidates' text).
FUNCTION_SQL = f"""
CREATE FUNCTION kb_text_search(any_word_query text, all_words_query text, max_hits integer, max_ranked integer,
                               max_postings integer)
RETURNS TABLE (chunk_id bigint, rank real)
LANGUAGE sql STABLE SECURITY DEFINER ROWS 20
SET search_path = pg_catalog, pg_temp
AS $body$
    WITH query AS MATERIALIZED (
        SELECT websearch_to_tsquery('english', any_word_query) AS any_word,
               plainto_tsquery('english', all_words_query) AS all_words
    ), word_counts AS (
        SELECT w.lexeme, coalesce(c.chunks, 0) AS chunks,
               sum(coalesce(c.chunks, 0)) OVER (ORDER BY coalesce(c.chunks, 0), w.lexeme) AS up_to
        FROM unnest(tsvector_to_array(to_tsvector('english', all_words_query))) w(lexeme)
        LEFT JOIN public.kb_lexeme_counts c ON c.clinic_id = {CURRENT_CLINIC} AND c.lexeme = w.lexeme
    ), all_word_hits AS MATERIALIZED (
        SELECT ch.id, ts_rank(ch.tsv, (SELECT any_word FROM query)) AS rank
        FROM public.kb_chunks ch
        WHERE ch.clinic_id = {CURRENT_CLINIC} AND ch.tsv @@ (SELECT all_words FROM query)
        LIMIT max_ranked
    ), rare_word_hits AS (
        SELECT ch.id, ts_rank(ch.tsv, (SELECT any_word FROM query)) AS rank
        FROM public.kb_chunks ch
        WHERE (SELECT count(*) FROM all_word_hits) < max_hits
          AND ch.clinic_id = {CURRENT_CLINIC}
          AND ch.tsv @@ (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery FROM word_counts
                         WHERE up_to - chunks < max_hits OR up_to <= max_postings)
        LIMIT max_ranked
    )
    SELECT id, max(rank) FROM (SELECT * FROM all_word_hits UNION ALL SELECT * FROM rare_word_hits) hits
    GROUP BY id ORDER BY 2 DESC, id LIMIT max_hits
$body$
"""

# Runs as whoever writes kb_chunks (the app role ingesting, under the clinic's row-level security; the owner
# seeding).  Deltas per (clinic, word): new rows count +1 per word, old rows -1; an update that leaves the text
# alone (re-embedding) changes nothing.  One clinic's counts are kept by one transaction at a time (an advisory
# lock per clinic, in clinic order): concurrent ingests queue instead of deadlocking on shared words.
COUNTS_TRIGGER_SQL = """
CREATE FUNCTION kb_lexeme_counts_sync() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public
AS $body$
DECLARE
    clinic_ids bigint[];
    lexemes text[];
    changes integer[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(clinic_id), array_agg(lexeme), array_agg(change) INTO clinic_ids, lexemes, changes
        FROM (SELECT n.clinic_id, w.lexeme, count(*)::integer AS change
              FROM new_rows n, unnest(tsvector_to_array(n.tsv)) w(lexeme) GROUP BY 1, 2) delta;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(clinic_id), array_agg(lexeme), array_agg(change) INTO clinic_ids, lexemes, changes
        FROM (SELECT o.clinic_id, w.lexeme, -count(*)::integer AS change
              FROM old_rows o, unnest(tsvector_to_array(o.tsv)) w(lexeme) GROUP BY 1, 2) delta;
    ELSE
        SELECT array_agg(clinic_id), array_agg(lexeme), array_agg(change) INTO clinic_ids, lexemes, changes
        FROM (SELECT clinic_id, lexeme, sum(change)::integer AS change FROM (
                  SELECT n.clinic_id, w.lexeme, 1 AS change
                  FROM new_rows n JOIN old_rows o ON o.id = n.id, unnest(tsvector_to_array(n.tsv)) w(lexeme)
                  WHERE n.tsv IS DISTINCT FROM o.tsv OR n.clinic_id IS DISTINCT FROM o.clinic_id
                  UNION ALL
                  SELECT o.clinic_id, w.lexeme, -1
                  FROM old_rows o JOIN new_rows n ON n.id = o.id, unnest(tsvector_to_array(o.tsv)) w(lexeme)
                  WHERE n.tsv IS DISTINCT FROM o.tsv OR n.clinic_id IS DISTINCT FROM o.clinic_id
              ) changed GROUP BY 1, 2 HAVING sum(change) <> 0) delta;
    END IF;
    IF clinic_ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('kb_lexeme_counts'), clinic::integer)
    FROM (SELECT DISTINCT clinic FROM unnest(clinic_ids) clinic ORDER BY 1) clinics;
    INSERT INTO kb_lexeme_counts AS c (clinic_id, lexeme, chunks)
    SELECT d.clinic_id, d.lexeme, d.change FROM unnest(clinic_ids, lexemes, changes) d(clinic_id, lexeme, change)
    WHERE d.change > 0
    ON CONFLICT (clinic_id, lexeme) DO UPDATE SET chunks = c.chunks + excluded.chunks;
    -- Words no chunk contains any more go first; then the others are decremented (the other order would see the
    -- decremented counts).
    DELETE FROM kb_lexeme_counts c USING unnest(clinic_ids, lexemes, changes) d(clinic_id, lexeme, change)
    WHERE d.change < 0 AND c.clinic_id = d.clinic_id AND c.lexeme = d.lexeme AND c.chunks + d.change <= 0;
    UPDATE kb_lexeme_counts c SET chunks = c.chunks + d.change
    FROM unnest(clinic_ids, lexemes, changes) d(clinic_id, lexeme, change)
    WHERE d.change < 0 AND c.clinic_id = d.clinic_id AND c.lexeme = d.lexeme;
    RETURN NULL;
END
$body$
"""

TRIGGERS = {
    "kb_lexeme_counts_insert": "AFTER INSERT ON kb_chunks REFERENCING NEW TABLE AS new_rows",
    "kb_lexeme_counts_delete": "AFTER DELETE ON kb_chunks REFERENCING OLD TABLE AS old_rows",
    "kb_lexeme_counts_update": "AFTER UPDATE ON kb_chunks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.drop_index("ix_kb_chunks_tsv", table_name="kb_chunks")
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (clinic_id, tsv) WITH (fastupdate = off)")
    op.execute("ALTER TABLE kb_chunks SET (toast_tuple_target = 4080)")

    op.create_table(
        "kb_lexeme_counts",
        sa.Column("clinic_id", sa.BigInteger(), nullable=False),
        sa.Column("lexeme", sa.Text(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", "lexeme", name=op.f("pk_kb_lexeme_counts")),
    )
    enable_tenant_isolation(op.get_bind(), ["kb_lexeme_counts"], [])
    op.execute(COUNTS_TRIGGER_SQL)
    for name, timing in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {timing} FOR EACH STATEMENT EXECUTE FUNCTION kb_lexeme_counts_sync()")
    # One clinic at a time under its own setting: a migration role that is not a superuser sees no rows otherwise.
    op.execute(
        """DO $$
        DECLARE clinic bigint;
        BEGIN
            FOR clinic IN SELECT id FROM clinics LOOP
                PERFORM set_config('app.clinic_id', clinic::text, true);
                INSERT INTO kb_lexeme_counts (clinic_id, lexeme, chunks)
                SELECT clinic, w.lexeme, count(*) FROM kb_chunks ch, unnest(tsvector_to_array(ch.tsv)) w(lexeme)
                WHERE ch.clinic_id = clinic GROUP BY 2;
            END LOOP;
            PERFORM set_config('app.clinic_id', '', true);
        END $$"""
    )

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
            GRANT SELECT ON kb_lexeme_counts TO {SEARCH_ROLE};
            CREATE POLICY kb_text_search ON kb_chunks FOR SELECT TO {SEARCH_ROLE} USING (true);
            CREATE POLICY kb_text_search ON kb_lexeme_counts FOR SELECT TO {SEARCH_ROLE} USING (true);
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
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON kb_chunks")
    op.execute("DROP FUNCTION IF EXISTS kb_lexeme_counts_sync()")
    op.drop_table("kb_lexeme_counts")
    op.execute("ALTER TABLE kb_chunks RESET (toast_tuple_target)")
    op.drop_index("ix_kb_chunks_tsv", table_name="kb_chunks")
    op.execute("CREATE INDEX ix_kb_chunks_tsv ON kb_chunks USING gin (tsv)")
