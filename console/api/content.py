"""Knowledge-base articles, automations and campaigns (read-only: lists and reports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, Page, PageQuery, api, decode_cursor, encode_cursor
from console.problems import not_found
from console.queries import content as queries
from domain.staff_access import Permission


class ArticleQuery(PageQuery):
    q: str | None = Field(default=None, max_length=200, description="part of a title or slug")


class ArticleSummary(BaseModel):
    id: int
    slug: str
    title: str
    source: str
    updated_at: datetime
    chunks: int


class Article(BaseModel):
    id: int
    slug: str
    title: str
    source: str
    body: str
    updated_at: datetime


class AutomationOut(BaseModel):
    id: int
    kind: str
    enabled: bool
    template: str
    settings: dict[str, Any]


class AutomationList(BaseModel):
    items: list[AutomationOut]


class CampaignSummary(BaseModel):
    id: int
    name: str
    status: str
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    rate_cap_per_s: float | None
    recipients: int


class CampaignReport(BaseModel):
    campaign_id: int
    name: str
    status: str
    recipients: int
    breakdown: dict[str, int]
    excluded: dict[str, int]
    sent: int
    delivered: int
    failed: int
    opted_out: int
    replied: int
    booked: int
    segments_sent: int
    cost_usd: float


@api(
    "GET",
    "/clinics/{clinic_id:int}/kb/articles",
    summary="Knowledge-base articles",
    tag="knowledge",
    permission=Permission.KB_READ,
    query=ArticleQuery,
    response=Page[ArticleSummary],
)
def list_articles(call: ApiCall) -> Page[ArticleSummary]:
    query: ArticleQuery = call.query
    after = decode_cursor(query.cursor, (int,))[0] if query.cursor else None
    rows = queries.articles(call.session, q=query.q, after_id=after, limit=query.limit + 1)
    page = [ArticleSummary.model_validate(r) for r in rows[: query.limit]]
    return Page[ArticleSummary](items=page, next_cursor=encode_cursor(page[-1].id) if len(rows) > query.limit else None)


@api(
    "GET",
    "/clinics/{clinic_id:int}/kb/articles/{article_id:int}",
    summary="One knowledge-base article",
    tag="knowledge",
    permission=Permission.KB_READ,
    response=Article,
)
def get_article(call: ApiCall) -> Article:
    row = queries.article(call.session, int(call.path_params["article_id"]))
    if row is None:
        raise not_found("article")
    return Article.model_validate(row)


@api(
    "GET",
    "/clinics/{clinic_id:int}/automations",
    summary="Automations (reminders, follow-ups) and whether each is on",
    tag="automations",
    permission=Permission.AUTOMATIONS_READ,
    response=AutomationList,
)
def list_automations(call: ApiCall) -> AutomationList:
    return AutomationList(items=[AutomationOut.model_validate(r) for r in queries.automations(call.session)])


class CampaignQuery(PageQuery):
    pass


@api(
    "GET",
    "/clinics/{clinic_id:int}/campaigns",
    summary="Campaigns, newest first",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_READ,
    query=CampaignQuery,
    response=Page[CampaignSummary],
)
def list_campaigns(call: ApiCall) -> Page[CampaignSummary]:
    query: CampaignQuery = call.query
    before = decode_cursor(query.cursor, (int,))[0] if query.cursor else None
    # A clinic has tens of campaigns, not thousands: the campaigns feature's own list, paged here.
    rows = [r for r in queries.campaigns(call.session, call.clinic.clinic_id) if before is None or r["id"] < before]
    page = [CampaignSummary.model_validate(r) for r in rows[: query.limit]]
    cursor = encode_cursor(page[-1].id) if len(rows) > query.limit else None
    return Page[CampaignSummary](items=page, next_cursor=cursor)


@api(
    "GET",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/report",
    summary="Where every recipient of a campaign stands, and what it brought (replies, bookings, opt-outs)",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_READ,
    response=CampaignReport,
)
def get_campaign_report(call: ApiCall) -> CampaignReport:
    report = queries.campaign_report(
        call.session, call.clinic.clinic_id, int(call.path_params["campaign_id"]), call.now
    )
    if report is None:
        raise not_found("campaign")
    return CampaignReport.model_validate(report)
