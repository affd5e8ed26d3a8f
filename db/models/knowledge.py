"""The knowledge base: documents, chunks (embedding and full-text) and lexeme counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Computed,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import EMBEDDING_DIMENSIONS, Base, _clinic_fk, _created


# ------------------------------------------------------------------ knowledge base
class KbDocument(Base):
    __tablename__ = "kb_documents"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    slug: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(255), server_default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),)


class KbChunk(Base):
    __tablename__ = "kb_chunks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS), nullable=True)
    # Which embedder produced ``embedding``: vectors of different models are not comparable, so search only
    # uses the current model's and re-indexing replaces the others.
    embedding_model: Mapped[str | None] = mapped_column(String(100))
    tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || to_tsvector('english', content)",
            persisted=True,
        ),
    )
    __table_args__ = (
        UniqueConstraint("document_id", "chunk_index"),
        Index(
            "ix_kb_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        # Leads with clinic_id (btree_gin, migration 0011): a clinic's matches without other clinics' rows.
        Index("ix_kb_chunks_tsv", "clinic_id", "tsv", postgresql_using="gin"),
    )


class KbLexemeCount(Base):
    """How many of a clinic's chunks contain each word (stemmed lexeme), kept by triggers on ``kb_chunks``
    (migration 0011).  Knowledge search leaves out of its any-word ranking the words too common to tell chunks
    apart — what inverse document frequency does in other engines — so its work stays bounded at any size."""

    __tablename__ = "kb_lexeme_counts"
    # No foreign key: rows follow the chunks' triggers, also while a clinic's deletion cascades.
    clinic_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    chunks: Mapped[int] = mapped_column(Integer)
