"""Knowledge-base articles from the console: create, edit, delete (owners and managers; everyone who reads the
knowledge base lists and reads them, ``console/api/content.py``).

Saved through the knowledge base's own writer (``worker.knowledge.save_article``, the one ``medspa kb ingest``
uses) in the request's transaction with its audit entry: the new text is searchable by full text when the
response arrives; the workers then embed its chunks (``embed_kb_document`` → ``reindex_missing_embeddings``) —
the console never loads an embedding model."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from console import jobs
from console.api.framework import ApiCall, ApiModel, api
from console.problems import Problem, not_found
from console.queries import content as queries
from domain.staff_access import Permission
from worker.knowledge import ArticleExists, SavedArticle, article_slug, delete_article, save_article

MAX_ARTICLE_CHARS = 50_000
CONSOLE_SOURCE = "console"


class ArticleEdit(ApiModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=MAX_ARTICLE_CHARS, description="plain text or Markdown")

    @field_validator("title", "body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class ArticleCreate(ArticleEdit):
    slug: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="lowercase words joined by dashes; default: from the title",
    )


class ArticleSaved(BaseModel):
    id: int
    slug: str
    title: str
    updated_at: datetime
    chunks: int
    changed: bool
    embedding: str  # "queued": the workers embed the new chunks; "not needed": nothing changed


class ArticleDeleted(BaseModel):
    id: int
    slug: str
    deleted: bool = True


def _saved(call: ApiCall, saved: SavedArticle, slug: str) -> ArticleSaved:
    clinic_id = call.clinic.clinic_id
    if saved.unembedded:
        call.after_commit.append(lambda: jobs.embed_article(call.runtime.outside, clinic_id, saved.document_id))
    row = queries.article(call.session, saved.document_id)
    assert row is not None
    return ArticleSaved(
        id=saved.document_id,
        slug=slug,
        title=str(row["title"]),
        updated_at=row["updated_at"],
        chunks=saved.chunks,
        changed=saved.changed,
        embedding="queued" if saved.unembedded else "not needed",
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/kb/articles",
    summary="Add a knowledge-base article (owners and managers; audited)",
    tag="knowledge",
    permission=Permission.KB_MANAGE,
    body=ArticleCreate,
    response=ArticleSaved,
    status_code=201,
)
def create_article(call: ApiCall) -> ArticleSaved:
    """The agent can cite it at once (full-text search); semantic search follows when the workers embedded it."""
    body: ArticleCreate = call.body
    slug = body.slug or article_slug(body.title)
    if not slug:
        raise Problem(
            400,
            "Invalid input",
            "slug: the title has no letters or digits to make one from; give a slug",
            kind="validation",
            errors=[{"field": "slug", "message": "required for this title"}],
        )
    try:
        saved = save_article(
            call.session, call.clinic.clinic_id, slug, body.title, body.body, source=CONSOLE_SOURCE, create_only=True
        )
    except ArticleExists:
        raise Problem(
            409,
            "Conflict",
            f"An article {slug!r} exists already: edit it, or choose another slug.",
            kind="conflict",
            errors=[{"field": "slug", "message": "taken"}],
        ) from None
    call.audit("kb.article_created", target_type="kb_document", target_id=saved.document_id, detail={"slug": slug})
    return _saved(call, saved, slug)


@api(
    "PUT",
    "/clinics/{clinic_id:int}/kb/articles/{article_id:int}",
    summary="Replace an article's title and text (owners and managers; audited)",
    tag="knowledge",
    permission=Permission.KB_MANAGE,
    body=ArticleEdit,
    response=ArticleSaved,
)
def update_article(call: ApiCall) -> ArticleSaved:
    """The slug stays (files ingested with ``medspa kb ingest`` are matched by it). Unchanged text is a no-op."""
    body: ArticleEdit = call.body
    row = queries.article(call.session, int(call.path_params["article_id"]))
    if row is None:
        raise not_found("article")
    slug = str(row["slug"])
    saved = save_article(call.session, call.clinic.clinic_id, slug, body.title, body.body, source=CONSOLE_SOURCE)
    if saved.changed:
        call.audit("kb.article_updated", target_type="kb_document", target_id=saved.document_id, detail={"slug": slug})
    return _saved(call, saved, slug)


@api(
    "DELETE",
    "/clinics/{clinic_id:int}/kb/articles/{article_id:int}",
    summary="Delete an article and its search chunks (owners and managers; audited)",
    tag="knowledge",
    permission=Permission.KB_MANAGE,
    response=ArticleDeleted,
)
def remove_article(call: ApiCall) -> ArticleDeleted:
    deleted = delete_article(call.session, document_id=int(call.path_params["article_id"]))
    if deleted is None:
        raise not_found("article")
    call.audit(
        "kb.article_deleted", target_type="kb_document", target_id=deleted.document_id, detail={"slug": deleted.slug}
    )
    return ArticleDeleted(id=deleted.document_id, slug=deleted.slug)
