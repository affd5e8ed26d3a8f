"""Ingest (SQLAlchemy's ``:name`` dialect): chunking, the idempotent article ingest, and filling in missing
embeddings.
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
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


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
