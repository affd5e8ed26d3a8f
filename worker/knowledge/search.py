"""Hybrid search (psycopg's ``%(name)s`` dialect: the tool's hot path): full-text and vector candidates in one
statement, fused by reciprocal rank.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from db.engine import Database
from domain.ports import Embedder

RRF_K = 60  # the usual constant from Cormack et al.; damps the weight of top ranks
CANDIDATES = 20  # per ranking, before fusion
# Cosine distance beyond which a vector hit is noise rather than an answer (MiniLM: unrelated text sits ~0.85-1.0).
MAX_VECTOR_DISTANCE = 0.8

_WORD = re.compile(r"[A-Za-z0-9']+")


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
