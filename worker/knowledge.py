"""The clinic knowledge base: chunking, idempotent ingest and hybrid search.

Why hybrid: patients ask in their own words ("does it hurt?") that an article
may never use ("numbing cream", "discomfort"), so pgvector similarity finds the
meaning; full-text finds exact terms (product names, "deposit") that small
embedding models blur.  The two rankings are fused with reciprocal rank
fusion, which needs no score calibration between them.  Without an embedder
the search is full-text alone (said once in the log by the composition root).

Ingest is idempotent: a document whose title+body hash did not change is left
alone (only missing embeddings are filled in), so re-running the staff script
costs nothing and never duplicates chunks.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from db.engine import Database
from db.models import EMBEDDING_DIMENSIONS
from domain.ports import Embedder

log = logging.getLogger(__name__)

CHUNK_CHARS = 800
RRF_K = 60  # the usual constant from Cormack et al.; damps the weight of top ranks
CANDIDATES = 20  # per ranking, before fusion
# Cosine distance beyond which a vector hit is noise rather than an answer (MiniLM: unrelated text sits ~0.85-1.0).
MAX_VECTOR_DISTANCE = 0.8

_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class KnowledgeHit:
    """One cited snippet: ``title`` and ``slug`` name the article it came from."""

    chunk_id: int
    slug: str
    title: str
    snippet: str
    score: float  # fused RRF score, higher is better
    text_rank: int | None  # 1-based rank in full-text results, None if absent
    vector_rank: int | None  # 1-based rank in vector results, None if absent
    distance: float | None  # cosine distance of the chunk to the query, when embedded

    def as_dict(self) -> dict[str, object]:
        return {"title": self.title, "slug": self.slug, "snippet": self.snippet, "score": round(self.score, 5)}


@dataclass(frozen=True)
class IngestResult:
    document_id: int
    chunks: int
    changed: bool  # the text changed (or the article is new)
    embedded: int  # chunks embedded during this call


# ---------------------------------------------------------------------------------------------- chunking
def _split_long(paragraph: str, limit: int) -> list[str]:
    """Split one over-long paragraph at sentence ends (words if a sentence alone is too long)."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def chunk_text(body: str, limit: int = CHUNK_CHARS) -> list[str]:
    """Paragraph-based chunks of at most ``limit`` characters; paragraphs are kept whole when they fit."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body.strip())]
    chunks: list[str] = []
    current = ""
    for paragraph in filter(None, paragraphs):
        for piece in _split_long(paragraph, limit) if len(paragraph) > limit else [paragraph]:
            if current and len(current) + 2 + len(piece) > limit:
                chunks.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def content_hash(title: str, body: str) -> str:
    return hashlib.sha256(f"{title}\n\x00{body}".encode()).hexdigest()


def _embed_input(title: str, chunk: str) -> str:
    # The title carries the topic ("Pain & numbing") that a chunk's body may not repeat.
    return f"{title}\n{chunk}"


_VECTOR_PARAM = bindparam("embedding", type_=Vector(EMBEDDING_DIMENSIONS))


# ---------------------------------------------------------------------------------------------- slugs
def article_slug(text_: str) -> str:
    """An article's slug from a file name or a title: lowercase letters, digits and dashes ('' when none)."""
    return re.sub(r"[^a-z0-9]+", "-", text_.lower()).strip("-")[:128]


# ---------------------------------------------------------------------------------------------- ingest
class ArticleExists(Exception):
    """``save_article(..., create_only=True)`` for a slug the clinic already has."""


@dataclass(frozen=True)
class SavedArticle:
    document_id: int
    chunks: int
    changed: bool  # the text changed (or the article is new)
    unembedded: bool  # some chunks wait for an embedding (``reindex_missing_embeddings`` fills them)


_FIND_ARTICLE = text("SELECT id, content_hash FROM kb_documents WHERE clinic_id = :c AND slug = :s")
_UPSERT_ARTICLE = text(
    """INSERT INTO kb_documents (clinic_id, slug, title, body, source, content_hash)
       VALUES (:c, :s, :t, :b, :src, :h)
       ON CONFLICT (clinic_id, slug) DO UPDATE
       SET title = EXCLUDED.title, body = EXCLUDED.body, source = EXCLUDED.source,
           content_hash = EXCLUDED.content_hash, updated_at = now()
       RETURNING id"""
)
_CREATE_ARTICLE = text(
    """INSERT INTO kb_documents (clinic_id, slug, title, body, source, content_hash)
       VALUES (:c, :s, :t, :b, :src, :h)
       ON CONFLICT (clinic_id, slug) DO NOTHING
       RETURNING id"""
)
_DELETE_CHUNKS = text("DELETE FROM kb_chunks WHERE document_id = :d")
_INSERT_CHUNK = text(
    """INSERT INTO kb_chunks (clinic_id, document_id, chunk_index, title, content, embedding, embedding_model)
       VALUES (:c, :d, :i, :t, :content, :embedding, :model)"""
).bindparams(_VECTOR_PARAM)
_DELETE_BY_SLUG = text("DELETE FROM kb_documents WHERE slug = :key RETURNING id, slug, title")
_DELETE_BY_ID = text("DELETE FROM kb_documents WHERE id = :key RETURNING id, slug, title")
_COUNT_CHUNKS = text("SELECT count(*) FROM kb_chunks WHERE document_id = :d")


def save_article(
    session: Session,
    clinic_id: int,
    slug: str,
    title: str,
    body: str,
    *,
    source: str = "",
    vectors: Sequence[Sequence[float]] | None = None,
    model: str | None = None,
    create_only: bool = False,
) -> SavedArticle:
    """Insert or update one article and its chunks in the caller's transaction.  Unchanged text is left alone.
    ``vectors`` (one per chunk of ``chunk_text(body)``, by ``model``) when the caller embedded them already;
    without them the chunks are searchable by full text at once and ``reindex_missing_embeddings`` embeds them."""
    digest = content_hash(title, body)
    row = session.execute(_FIND_ARTICLE, {"c": clinic_id, "s": slug}).first()
    if row is not None and create_only:
        raise ArticleExists(slug)
    if row is not None and row.content_hash == digest:
        count = int(session.execute(_COUNT_CHUNKS, {"d": row.id}).scalar_one())
        return SavedArticle(document_id=int(row.id), chunks=count, changed=False, unembedded=False)
    chunks = chunk_text(body)
    if vectors is not None and len(vectors) != len(chunks):
        raise ValueError("one vector per chunk")
    params = {"c": clinic_id, "s": slug, "t": title, "b": body, "src": source, "h": digest}
    document_id = session.execute(_CREATE_ARTICLE if create_only else _UPSERT_ARTICLE, params).scalar_one_or_none()
    if document_id is None:  # created by someone else since the look-up
        raise ArticleExists(slug)
    session.execute(_DELETE_CHUNKS, {"d": document_id})
    for index, chunk in enumerate(chunks):
        session.execute(
            _INSERT_CHUNK,
            {
                "c": clinic_id,
                "d": document_id,
                "i": index,
                "t": title,
                "content": chunk,
                "embedding": vectors[index] if vectors else None,
                "model": model if vectors else None,
            },
        )
    log.info("kb article saved", extra={"clinic_id": clinic_id, "document_id": document_id, "chunks": len(chunks)})
    return SavedArticle(int(document_id), len(chunks), changed=True, unembedded=bool(chunks) and not vectors)


@dataclass(frozen=True)
class DeletedArticle:
    document_id: int
    slug: str
    title: str


def delete_article(
    session: Session, *, slug: str | None = None, document_id: int | None = None
) -> DeletedArticle | None:
    """Delete one article (by slug or id) and its chunks in the caller's transaction; None when there is none."""
    if (slug is None) == (document_id is None):
        raise ValueError("name the article by slug or by id")
    statement, key = (_DELETE_BY_SLUG, slug) if slug is not None else (_DELETE_BY_ID, document_id)
    row = session.execute(statement, {"key": key}).first()
    return DeletedArticle(int(row.id), row.slug, row.title) if row else None


def ingest_article(
    database: Database,
    clinic_id: int,
    slug: str,
    title: str,
    body: str,
    embedder: Embedder | None,
    *,
    source: str = "",
) -> IngestResult:
    """Insert or update one article and its chunks.  Unchanged text: no rewrite, only missing embeddings filled."""
    digest = content_hash(title, body)
    with database.tenant_scope(clinic_id) as session:
        row = session.execute(_FIND_ARTICLE, {"c": clinic_id, "s": slug}).first()
    if row is not None and row.content_hash == digest:
        embedded = reindex_missing_embeddings(database, clinic_id, embedder, document_id=row.id) if embedder else 0
        count = _chunk_count(database, clinic_id, row.id)
        return IngestResult(document_id=row.id, chunks=count, changed=False, embedded=embedded)

    chunks = chunk_text(body)
    # Embed before opening the write transaction: no transaction is held across a (possibly remote) model call.
    vectors = embedder.embed([_embed_input(title, c) for c in chunks]) if embedder and chunks else None
    with database.tenant_scope(clinic_id) as session:
        saved = save_article(
            session,
            clinic_id,
            slug,
            title,
            body,
            source=source,
            vectors=vectors,
            model=embedder.name if vectors and embedder else None,
        )
    return IngestResult(
        document_id=saved.document_id, chunks=saved.chunks, changed=saved.changed, embedded=len(vectors or [])
    )


def _chunk_count(database: Database, clinic_id: int, document_id: int) -> int:
    with database.tenant_scope(clinic_id) as session:
        return int(session.execute(_COUNT_CHUNKS, {"d": document_id}).scalar_one())


def reindex_missing_embeddings(
    database: Database,
    clinic_id: int,
    embedder: Embedder | None,
    *,
    document_id: int | None = None,
    batch_size: int = 64,
) -> int:
    """Embed every chunk of the clinic (or one document) that has no embedding from this embedder yet
    (none at all, or another model's); returns how many."""
    if embedder is None:
        return 0
    total = 0
    while True:
        with database.tenant_scope(clinic_id) as session:
            rows = session.execute(
                text(
                    """SELECT id, title, content FROM kb_chunks
                       WHERE clinic_id = :c AND (embedding IS NULL OR embedding_model IS DISTINCT FROM :model)
                         AND (CAST(:d AS bigint) IS NULL OR document_id = CAST(:d AS bigint))
                       ORDER BY id LIMIT :n"""
                ),
                {"c": clinic_id, "d": document_id, "n": batch_size, "model": embedder.name},
            ).all()
        if not rows:
            return total
        vectors = embedder.embed([_embed_input(r.title, r.content) for r in rows])
        with database.tenant_scope(clinic_id) as session:
            update = text(
                """UPDATE kb_chunks SET embedding = :embedding, embedding_model = :model
                   WHERE id = :id AND (embedding IS NULL OR embedding_model IS DISTINCT FROM :model)"""
            ).bindparams(_VECTOR_PARAM)
            for row, vector in zip(rows, vectors, strict=True):
                session.execute(update, {"id": row.id, "embedding": vector, "model": embedder.name})
        total += len(rows)


# ---------------------------------------------------------------------------------------------- search
# Full-text candidates come from ``kb_text_search`` (migration 0011): under row-level security ``@@`` is not
# leakproof, so a plain query could never use the GIN index; the function ranks with the index and returns ids.
# Its work is bounded whatever the size of the knowledge base: it ranks at most TEXT_MAX_RANKED chunks per tier
# (all the words, then any of the rarer words), and leaves out of the second tier the words beyond
# TEXT_MAX_POSTINGS chunks (rarest first) — a word in thousands of a clinic's chunks can't tell them apart.
TEXT_MAX_RANKED = 200
TEXT_MAX_POSTINGS = 5000
# HNSW search breadth (pgvector's default, measured: recall@20 0.88 at 100k synthetic chunks, 0.98 at 10k).  With
# iterative scans (pgvector >= 0.8) a scan whose nearest rows belong to other clinics keeps going instead of
# returning too few: "relaxed_order" may return them slightly out of order, so the statement re-sorts.
HNSW_EF_SEARCH = 40
_SEARCH_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
_TEXT_HITS = """SELECT chunk_id AS id, row_number() OVER (ORDER BY rank DESC, chunk_id) AS text_rank
        FROM kb_text_search(%(any_word)s, %(all_words)s, %(candidates)s, %(max_ranked)s, %(max_postings)s)"""
_NO_TEXT_HITS = "SELECT NULL::bigint AS id, NULL::bigint AS text_rank WHERE false"
_VECTOR_HITS = """SELECT ch.id, ch.embedding <=> %(embedding)s::vector AS distance
        FROM kb_chunks ch
        WHERE ch.clinic_id = %(clinic_id)s AND ch.embedding IS NOT NULL AND ch.embedding_model = %(model)s
        ORDER BY ch.embedding <=> %(embedding)s::vector
        LIMIT %(candidates)s"""
_NO_VECTOR_HITS = "SELECT NULL::bigint AS id, NULL::float8 AS distance WHERE false"
# One statement, one round trip: both rankings and the details of every candidate.  The candidates' rows are fetched
# by primary key (``id = ANY(...)``): joined on the ids alone, the planner misjudged how few there are and read the
# clinic's whole table (measured: 40 ms for a clinic of 1,000 chunks in a table of 100,000).
_SEARCH = """WITH text_hits AS ({text_hits}),
    vector_hits AS MATERIALIZED ({vector_hits}),
    vector_ranked AS (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS vector_rank
        FROM vector_hits WHERE distance <= %(max_distance)s
    ),
    candidates AS MATERIALIZED (
        SELECT coalesce(t.id, v.id) AS id, t.text_rank, v.vector_rank, v.distance
        FROM text_hits t FULL JOIN vector_ranked v ON v.id = t.id
    )
    SELECT c.id, ch.document_id, ch.chunk_index, ch.content, d.slug, d.title, c.text_rank, c.vector_rank, c.distance
    FROM kb_chunks ch
    JOIN candidates c ON c.id = ch.id
    JOIN kb_documents d ON d.id = ch.document_id
    WHERE ch.id = ANY(ARRAY(SELECT id FROM candidates))"""
_SEARCHES = {
    (with_text, with_vector): _SEARCH.format(
        text_hits=_TEXT_HITS if with_text else _NO_TEXT_HITS,
        vector_hits=_VECTOR_HITS if with_vector else _NO_VECTOR_HITS,
    )
    for with_text in (True, False)
    for with_vector in (True, False)
}


def _query_words(query: str) -> list[str]:
    words = [w.strip("'") for w in _WORD.findall(query.lower())]
    return [w for w in words if len(w) > 1 and w != "or"]


def _or_query(query: str) -> str:
    """websearch syntax OR-ing the words: patients write sentences, and AND over all of them rarely matches."""
    return " or ".join(_query_words(query))


def _vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(str(float(x)) for x in vector) + "]"


@dataclass(frozen=True)
class _Candidate:
    chunk_id: int
    document_id: int
    chunk_index: int
    content: str
    slug: str
    title: str


def _passage(best: int, details: dict[int, _Candidate], chunk_score: dict[int, float]) -> str:
    """The article's best matching chunk and its next best matching one (in article order): a long article's
    answer is often in its second chunk (issue 14: quote the relevant sentences, not the wrong chunk)."""
    doc = details[best].document_id
    others = sorted(
        (c for c in chunk_score if c != best and c in details and details[c].document_id == doc),
        key=lambda c: -chunk_score[c],
    )
    chosen = [best, *others[:1]]
    return "\n\n".join(details[c].content for c in sorted(chosen, key=lambda c: details[c].chunk_index))


def search_knowledge(
    database: Database,
    clinic_id: int,
    query: str,
    embedder: Embedder | None,
    k: int = 3,
    *,
    max_distance: float = MAX_VECTOR_DISTANCE,
) -> list[KnowledgeHit]:
    """Top ``k`` snippets for ``query`` from the clinic's knowledge base, best first, each citing its article."""
    query = query.strip()
    if not query:
        return []
    words = _query_words(query)
    vector = embedder.embed([query])[0] if embedder is not None else None
    if not words and vector is None:
        return []
    params = {
        "any_word": " or ".join(words),
        "all_words": " ".join(words),
        "candidates": CANDIDATES,
        "max_ranked": TEXT_MAX_RANKED,
        "max_postings": TEXT_MAX_POSTINGS,
        "embedding": _vector_literal(vector) if vector is not None else None,
        "clinic_id": clinic_id,
        "model": embedder.name if embedder is not None else "",
        "max_distance": max_distance,
    }
    with database.tenant_connection(clinic_id) as conn:
        if vector is not None:
            conn.execute(_SEARCH_SETTINGS, (str(HNSW_EF_SEARCH),))
        # Not prepared: planned with this clinic's numbers, the planner picks the HNSW scan for a clinic with many
        # chunks and an exact scan of its own rows for a small one; a generic plan would pick one for all.
        rows = conn.execute(_SEARCHES[(bool(words), vector is not None)], params, prepare=False).fetchall()
    text_rank: dict[int, int] = {}
    vector_rank: dict[int, int] = {}
    distances: dict[int, float] = {}
    details: dict[int, _Candidate] = {}
    for chunk_id, document_id, chunk_index, content, slug, title, text_position, vector_position, distance in rows:
        details[chunk_id] = _Candidate(chunk_id, document_id, chunk_index, content, slug, title)
        if text_position is not None:
            text_rank[chunk_id] = int(text_position)
        if vector_position is not None:
            vector_rank[chunk_id] = int(vector_position)
            distances[chunk_id] = float(distance)
    chunk_score: dict[int, float] = {}
    for ranks in (text_rank, vector_rank):
        for chunk_id, rank in ranks.items():
            chunk_score[chunk_id] = chunk_score.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    # Fuse per article: an article whose several passages match is a better answer than one stray passage,
    # and citations name articles.  The article's best passage is its snippet.
    doc_score: dict[int, float] = {}
    best_chunk: dict[int, int] = {}
    for chunk_id, score in chunk_score.items():
        doc = details[chunk_id].document_id
        doc_score[doc] = doc_score.get(doc, 0.0) + score
        current = best_chunk.get(doc)
        if current is None or (score, -chunk_id) > (chunk_score[current], -current):
            best_chunk[doc] = chunk_id
    best = [best_chunk[doc] for doc in sorted(doc_score, key=lambda d: (-doc_score[d], best_chunk[d]))[:k]]
    scores = {best_chunk[doc]: doc_score[doc] for doc in doc_score}
    return [
        KnowledgeHit(
            chunk_id=cid,
            slug=details[cid].slug,
            title=details[cid].title,
            snippet=_passage(cid, details, chunk_score),
            score=scores[cid],
            text_rank=text_rank.get(cid),
            vector_rank=vector_rank.get(cid),
            distance=distances.get(cid),
        )
        for cid in best
    ]
