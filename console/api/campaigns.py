"""Campaigns from the console: build a segment and preview it (counts by reason, sample texts, cost), create,
schedule or send now, pause, resume, cancel, and watch one (its report is the progress).  Owners manage
campaigns; managers read them.  Every step is the campaigns feature's own (``worker.campaigns``: lifecycle,
segments.preview, report), the same the ``medspa campaign`` command runs; sending is the workers' job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from console import jobs
from console.api.framework import ApiCall, ApiModel, api
from console.problems import Problem, not_found
from domain.audience import SegmentError, SegmentFilter
from domain.staff_access import Permission
from domain.templates import TemplateError
from worker.campaigns import lifecycle
from worker.campaigns.segments import preview

MAX_TEMPLATE_CHARS = 1600  # ten SMS segments


class SegmentIn(ApiModel):
    """Who the campaign is for; the filters are ANDed, none set means every client of the clinic."""

    last_visit_before: date | None = Field(default=None, description="last completed visit before this local date")
    last_visit_after: date | None = Field(default=None, description="last completed visit on or after this date")
    services_had: list[str] = Field(default_factory=list, max_length=50, description="had any of these (slugs)")
    tags: list[str] = Field(default_factory=list, max_length=50, description="carries any of these tags")
    has_future_appointment: bool | None = Field(default=None, description="true, false, or absent: don't care")
    min_spend_cents: int | None = Field(default=None, ge=0, description="completed visits add up to at least this")

    @field_validator("services_had", "tags")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value if v.strip()]
        if any(len(v) > 64 for v in cleaned):
            raise ValueError("at most 64 characters each")
        return cleaned

    def filter(self) -> SegmentFilter:
        try:
            return SegmentFilter.from_dict(self.model_dump(exclude_defaults=True))
        except SegmentError as exc:
            raise invalid("segment", str(exc)) from None


class PreviewRequest(ApiModel):
    template: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS, description="the text, with placeholders")
    segment: SegmentIn = Field(default_factory=SegmentIn)


class CampaignCreate(PreviewRequest):
    name: str = Field(min_length=1, max_length=200)
    rate_cap_per_s: float | None = Field(default=None, gt=0, le=100, description="messages per second, at most")

    @field_validator("name", "template")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class ScheduleRequest(ApiModel):
    at: datetime = Field(description="when to start; an ISO date-time, the clinic's local time unless it has an offset")


class PreviewOut(BaseModel):
    matched: int
    recipients: int
    deferred: int
    excluded: dict[str, int]
    samples: list[str]
    segments: int
    cost_usd: float
    cost_per_segment_usd: float
    segment: str


class CampaignOut(BaseModel):
    id: int
    name: str
    template: str
    segment: dict[str, Any]
    segment_description: str
    status: str
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    rate_cap_per_s: float | None
    created_by: str
    created_at: datetime


class CampaignAction(BaseModel):
    id: int
    status: str
    scheduled_at: datetime | None = None
    withdrawn: int | None = None  # pause: queued texts taken back until resume
    not_sent: int | None = None  # cancel: recipients who now get nothing


def invalid(field: str, message: str) -> Problem:
    return Problem(
        400,
        "Invalid input",
        f"{field}: {message}",
        kind="validation",
        errors=[{"field": field, "message": message}],
    )


def _campaign(call: ApiCall, *, lock: bool = False) -> lifecycle.Campaign:
    try:
        return lifecycle.get_campaign(
            call.session, call.clinic.clinic_id, int(call.path_params["campaign_id"]), lock=lock
        )
    except lifecycle.CampaignError:
        raise not_found("campaign") from None


def _step(call: ApiCall, action: str, change: Callable[[int, int], CampaignAction]) -> CampaignAction:
    """A lifecycle step on the campaign in the URL — ``change(clinic_id, campaign_id)`` runs it and answers — with
    what every step shares: unknown → 404, not allowed in its state → 409 (the lifecycle's own sentence), the audit
    row ``campaign.{action}``, and a campaign now sending handed to the runner after the commit."""
    clinic_id = call.clinic.clinic_id
    campaign_id = _campaign(call, lock=True).id
    try:
        answer = change(clinic_id, campaign_id)
    except lifecycle.CampaignError as exc:
        raise Problem(409, "Conflict", str(exc), kind="conflict") from None
    call.audit(f"campaign.{action}", target_type="campaign", target_id=campaign_id)
    if answer.status == "sending":
        outside = call.runtime.outside
        call.after_commit.append(lambda: jobs.start_campaign_runner(outside, clinic_id, campaign_id))
    return answer


def campaign_out(campaign: lifecycle.Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        template=campaign.template,
        segment=campaign.segment.to_dict(),
        segment_description=campaign.segment.describe(),
        status=campaign.status,
        scheduled_at=campaign.scheduled_at,
        started_at=campaign.started_at,
        completed_at=campaign.completed_at,
        rate_cap_per_s=campaign.rate_cap_per_s,
        created_by=campaign.created_by,
        created_at=campaign.created_at,
    )


def run_preview(call: ApiCall, template: str, segment: SegmentFilter, campaign_id: int | None = None) -> PreviewOut:
    try:
        result = preview(call.session, call.clinic.clinic_id, template, segment, call.now, campaign_id=campaign_id)
    except TemplateError as exc:
        raise invalid("template", str(exc)) from None
    # The samples are patients' texts: who looked is on record, like opening a client.
    call.audit(
        "campaign.previewed",
        target_type="campaign" if campaign_id else "",
        target_id=campaign_id,
        detail={"segment": segment.to_dict(), "matched": result.matched},
    )
    return PreviewOut.model_validate(result.as_dict())


# ------------------------------------------------------------------ endpoints
@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/preview",
    summary="Preview a segment and a text: who would get it now, who is excluded and why, samples and cost",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    body=PreviewRequest,
    response=PreviewOut,
)
def preview_segment(call: ApiCall) -> PreviewOut:
    """Nothing is written but the audit entry; the samples are the first recipients' rendered texts."""
    body: PreviewRequest = call.body
    return run_preview(call, body.template, body.segment.filter())


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns",
    summary="Create a draft campaign from a text and a segment (owners only)",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    body=CampaignCreate,
    response=CampaignOut,
    status_code=201,
)
def create_campaign(call: ApiCall) -> CampaignOut:
    body: CampaignCreate = call.body
    segment = body.segment.filter()
    try:
        campaign_id = lifecycle.create_campaign(
            call.session,
            call.clinic.clinic_id,
            name=body.name,
            template=body.template,
            segment=segment,
            created_by=call.principal.user.email,
            rate_cap_per_s=body.rate_cap_per_s,
        )
    except TemplateError as exc:
        raise invalid("template", str(exc)) from None
    except lifecycle.CampaignError as exc:
        raise invalid("campaign", str(exc)) from None
    call.audit("campaign.created", target_type="campaign", target_id=campaign_id, detail={"segment": segment.to_dict()})
    return campaign_out(lifecycle.get_campaign(call.session, call.clinic.clinic_id, campaign_id))


@api(
    "GET",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}",
    summary="One campaign: its text, segment and state (its report is the progress)",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_READ,
    response=CampaignOut,
)
def get_campaign(call: ApiCall) -> CampaignOut:
    return campaign_out(_campaign(call))


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/preview",
    summary="Preview a saved campaign as if it were sent now",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    response=PreviewOut,
)
def preview_campaign(call: ApiCall) -> PreviewOut:
    campaign = _campaign(call)
    return run_preview(call, campaign.template, campaign.segment, campaign.id)


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/schedule",
    summary="Schedule a draft (or rescheduled) campaign; a time not in the future sends now",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    body=ScheduleRequest,
    response=CampaignAction,
)
def schedule_campaign(call: ApiCall) -> CampaignAction:
    body: ScheduleRequest = call.body
    at = lifecycle.clinic_instant(call.session, call.clinic.clinic_id, body.at)

    def schedule(clinic_id: int, campaign_id: int) -> CampaignAction:
        status = lifecycle.schedule_campaign(call.session, clinic_id, campaign_id, at, call.now)
        return CampaignAction(id=campaign_id, status=status, scheduled_at=at)

    return _step(call, "scheduled", schedule)


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/send",
    summary="Start sending now (the workers send, paced and within each recipient's allowed hours)",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    response=CampaignAction,
)
def send_campaign(call: ApiCall) -> CampaignAction:
    def send_now(clinic_id: int, campaign_id: int) -> CampaignAction:
        status = lifecycle.schedule_campaign(call.session, clinic_id, campaign_id, call.now, call.now)
        return CampaignAction(id=campaign_id, status=status, scheduled_at=call.now)

    return _step(call, "sent", send_now)


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/pause",
    summary="Pause: queued texts are taken back until resume",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    response=CampaignAction,
)
def pause_campaign(call: ApiCall) -> CampaignAction:
    def pause(clinic_id: int, campaign_id: int) -> CampaignAction:
        withdrawn = lifecycle.pause_campaign(call.session, clinic_id, campaign_id)
        return CampaignAction(id=campaign_id, status="paused", withdrawn=withdrawn)

    return _step(call, "paused", pause)


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/resume",
    summary="Resume a paused campaign",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    response=CampaignAction,
)
def resume_campaign(call: ApiCall) -> CampaignAction:
    def resume(clinic_id: int, campaign_id: int) -> CampaignAction:
        return CampaignAction(
            id=campaign_id, status=lifecycle.resume_campaign(call.session, clinic_id, campaign_id, call.now)
        )

    return _step(call, "resumed", resume)


@api(
    "POST",
    "/clinics/{clinic_id:int}/campaigns/{campaign_id:int}/cancel",
    summary="Cancel for good: nothing more is sent",
    tag="campaigns",
    permission=Permission.CAMPAIGNS_MANAGE,
    response=CampaignAction,
)
def cancel_campaign(call: ApiCall) -> CampaignAction:
    def cancel(clinic_id: int, campaign_id: int) -> CampaignAction:
        not_sent = lifecycle.cancel_campaign(call.session, clinic_id, campaign_id, call.now)
        return CampaignAction(id=campaign_id, status="cancelled", not_sent=not_sent)

    return _step(call, "cancelled", cancel)
