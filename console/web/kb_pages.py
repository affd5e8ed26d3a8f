"""Knowledge-base pages: the list, one article (with its edit form for owners and managers), a new article,
deleting one.  Reads and writes are the API's own handlers (``console/api/content.py``, ``knowledge.py``)."""

from __future__ import annotations

from pydantic import Field

from console.api.content import ArticleQuery, get_article, list_articles
from console.api.framework import ApiCall, ApiModel
from console.api.knowledge import ArticleCreate, ArticleEdit, create_article, remove_article, update_article
from console.problems import Problem
from console.web.forms import FormData, Shown, form, notice, problem_errors, validated
from console.web.pages import PageResult, page
from domain.staff_access import Permission


class KbListQuery(ArticleQuery):
    notice: str | None = Field(default=None, max_length=32)


class NoticeQuery(ApiModel):
    notice: str | None = Field(default=None, max_length=32)


def _base(call: ApiCall) -> str:
    return f"/clinics/{call.clinic.clinic_id}/kb"


@page("/clinics/{clinic_id:int}/kb", permission=Permission.KB_READ, query=KbListQuery)
def kb_list_page(call: ApiCall) -> PageResult:
    return PageResult(
        "kb.html", {"title": "Knowledge base", "page": list_articles(call), "notice": notice(call.query.notice)}
    )


@page("/clinics/{clinic_id:int}/kb/new", permission=Permission.KB_MANAGE)
def kb_new_page(call: ApiCall) -> PageResult:
    return PageResult("kb_new.html", {"title": "New article", "values": {}, "errors": []})


@form("/clinics/{clinic_id:int}/kb/new", permission=Permission.KB_MANAGE)
def kb_create(call: ApiCall, data: FormData) -> str | Shown:
    values = {"title": data.get("title"), "body": data.get("body"), "slug": data.optional("slug")}
    try:
        saved = create_article(validated(call, ArticleCreate, values))
    except Problem as problem:
        context = {"title": "New article", "values": values, "errors": problem_errors(problem)}
        return Shown("kb_new.html", context, status=problem.status)
    return f"{_base(call)}/{saved.id}?notice=created"


@page("/clinics/{clinic_id:int}/kb/{article_id:int}", permission=Permission.KB_READ, query=NoticeQuery)
def kb_article_page(call: ApiCall) -> PageResult:
    article = get_article(call)
    values = {"title": article.title, "body": article.body}
    return PageResult(
        "kb_article.html",
        {
            "title": article.title,
            "article": article,
            "values": values,
            "errors": [],
            "notice": notice(call.query.notice),
        },
    )


@form("/clinics/{clinic_id:int}/kb/{article_id:int}", permission=Permission.KB_MANAGE)
def kb_update(call: ApiCall, data: FormData) -> str | Shown:
    values = {"title": data.get("title"), "body": data.get("body")}
    try:
        saved = update_article(validated(call, ArticleEdit, values))
    except Problem as problem:
        if problem.status == 404:
            raise
        context = {
            "title": "Edit article",
            "article": get_article(call),
            "values": values,
            "errors": problem_errors(problem),
            "notice": "",
        }
        return Shown("kb_article.html", context, status=problem.status)
    return f"{_base(call)}/{saved.id}?notice={'saved' if saved.changed else 'no-change'}"


@form("/clinics/{clinic_id:int}/kb/{article_id:int}/delete", permission=Permission.KB_MANAGE)
def kb_delete(call: ApiCall, data: FormData) -> str:
    remove_article(call)
    return f"{_base(call)}?notice=deleted"
