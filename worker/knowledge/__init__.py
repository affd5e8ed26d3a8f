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
Modules, one parameter dialect each: ``ingest`` (chunking, ingest, reindexing; SQLAlchemy sessions, ``:name``) and
``search`` (the hybrid search on the agent's hot path; psycopg, ``%(name)s``).
"""

from __future__ import annotations

from worker.knowledge.ingest import (
    ArticleExists,
    IngestResult,
    SavedArticle,
    article_slug,
    chunk_text,
    content_hash,
    delete_article,
    ingest_article,
    reindex_missing_embeddings,
    save_article,
)
from worker.knowledge.search import KnowledgeHit, search_knowledge

__all__ = [
    "ArticleExists",
    "IngestResult",
    "KnowledgeHit",
    "SavedArticle",
    "article_slug",
    "chunk_text",
    "content_hash",
    "delete_article",
    "ingest_article",
    "reindex_missing_embeddings",
    "save_article",
    "search_knowledge",
]
