"""Campaign pages: the list, the builder (a segment and a text, previewed — counts, exclusions by reason, sample
texts, cost — before it is saved), one campaign (its progress refreshing while it sends, its report, and the
owner's actions: preview, send now, schedule, pause, resume, cancel).  Every step is the API's own handler
(``console/api/campaigns.py``, ``content.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from console.api.campaigns import (
    CampaignCreate,
    PreviewRequest,
    ScheduleRequest,
    cancel_campaign,
    create_campaign,
    get_campaign,
    pause_campaign,
    preview_campaign,
    preview_segment,
    resume_campaign,
    schedule_campaign,
    send_campaign,
)
from console.api.content import CampaignQuery, get_campaign_report, list_campaigns
from console.api.framework import ApiCall, ApiModel
from console.api.schedule import list_services
from console.problems import Problem
from console.web.forms import FormData, Shown, form, notice, problem_errors, validated
from console.web.pages import PageResult, page
from domain.staff_access import Permission

ACTIVE = ("scheduled", "sending")  # states whose progress the page refreshes


class CampaignsQuery(CampaignQuery):
    notice: str | None = Field(default=None, max_length=32)


class NoticeQuery(ApiModel):
    notice: str | None = Field(default=None, max_length=32)


def _services(call: ApiCall) -> list[Any]:
    return [s for s in list_services(call).items if s.active]


def _spend_cents(text: str) -> int | None:
    text = text.strip().lstrip("$").replace(",", "")
    if not text:
        return None
    try:
        return round(float(text) * 100)
    except ValueError:
        raise Problem(
            400,
            "Invalid input",
            "minimum spend: a dollar amount such as 250 or 250.00",
            kind="validation",
            errors=[{"field": "min_spend", "message": "a dollar amount such as 250 or 250.00"}],
        ) from None


def _segment(data: FormData) -> dict[str, Any]:
    future = {"yes": True, "no": False}.get(data.get("has_future_appointment"))
    return {
        "last_visit_before": data.optional("last_visit_before"),
        "last_visit_after": data.optional("last_visit_after"),
        "services_had": data.all("services_had"),
        "tags": [t.strip() for t in data.get("tags").split(",") if t.strip()],
        "has_future_appointment": future,
        "min_spend_cents": _spend_cents(data.get("min_spend")),
    }


def _builder(call: ApiCall, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "title": "New campaign",
        "values": values,
        "services": _services(call),
        "errors": [],
        "preview": None,
        **extra,
    }


@page("/clinics/{clinic_id:int}/campaigns", permission=Permission.CAMPAIGNS_READ, query=CampaignsQuery)
def campaigns_page(call: ApiCall) -> PageResult:
    return PageResult(
        "campaigns.html", {"title": "Campaigns", "page": list_campaigns(call), "notice": notice(call.query.notice)}
    )


@page("/clinics/{clinic_id:int}/campaigns/new", permission=Permission.CAMPAIGNS_MANAGE)
def campaign_builder_page(call: ApiCall) -> PageResult:
    return PageResult("campaign_new.html", _builder(call, {"services_had": []}))


@form("/clinics/{clinic_id:int}/campaigns/new", permission=Permission.CAMPAIGNS_MANAGE)
def campaign_builder(call: ApiCall, data: FormData) -> str | Shown:
    """``action=preview`` shows who would get it (nothing saved); ``action=create`` saves a draft."""
    values: dict[str, Any] = {**data.as_dict(), "services_had": data.all("services_had")}
    try:
        segment = _segment(data)
        if data.get("action") == "create":
            body = {
                "name": data.get("name"),
                "template": data.get("template"),
                "segment": segment,
                "rate_cap_per_s": data.optional("rate_cap_per_s"),
            }
            created = create_campaign(validated(call, CampaignCreate, body))
            return f"/clinics/{call.clinic.clinic_id}/campaigns/{created.id}?notice=created"
        result = preview_segment(
            validated(call, PreviewRequest, {"template": data.get("template"), "segment": segment})
        )
    except Problem as problem:
        if problem.status in (401, 403):
            raise
        return Shown("campaign_new.html", _builder(call, values, errors=problem_errors(problem)), problem.status)
    return Shown("campaign_new.html", _builder(call, values, preview=result))


def _detail(call: ApiCall, **extra: Any) -> dict[str, Any]:
    campaign = get_campaign(call)
    return {
        "title": campaign.name,
        "campaign": campaign,
        "report": get_campaign_report(call),
        "active": campaign.status in ACTIVE,
        "preview": None,
        "errors": [],
        "notice": "",
        "fragment": "_campaign_progress.html",
        **extra,
    }


@page("/clinics/{clinic_id:int}/campaigns/{campaign_id:int}", permission=Permission.CAMPAIGNS_READ, query=NoticeQuery)
def campaign_page(call: ApiCall) -> PageResult:
    return PageResult("campaign.html", _detail(call, notice=notice(call.query.notice)))


_ACTIONS = {
    "send": (send_campaign, "sending"),
    "pause": (pause_campaign, "paused"),
    "resume": (resume_campaign, "resumed"),
    "cancel": (cancel_campaign, "cancelled"),
}


@form("/clinics/{clinic_id:int}/campaigns/{campaign_id:int}", permission=Permission.CAMPAIGNS_MANAGE)
def campaign_action(call: ApiCall, data: FormData) -> str | Shown:
    action = data.get("action")
    here = f"/clinics/{call.clinic.clinic_id}/campaigns/{call.path_params['campaign_id']}"
    try:
        if action == "preview":
            return Shown("campaign.html", _detail(call, preview=preview_campaign(call)))
        if action == "schedule":
            result = schedule_campaign(validated(call, ScheduleRequest, {"at": data.get("at")}))
            return f"{here}?notice={'sending' if result.status == 'sending' else 'scheduled'}"
        if action not in _ACTIONS:
            raise Problem(400, "Invalid input", "Choose one of the campaign's actions.", kind="validation")
        handler, done = _ACTIONS[action]
        handler(call)
    except Problem as problem:
        if problem.status in (401, 403, 404):
            raise
        return Shown("campaign.html", _detail(call, errors=problem_errors(problem)), problem.status)
    return f"{here}?notice={done}"
