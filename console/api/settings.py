"""The clinic's settings that are safe to edit from the web (owners only): opening hours, closed dates and the
policies (cancellation window and fee, deposits, quiet hours, marketing cap, …).  Validated by the clinic file's
own rules (``worker.clinic_config`` via ``worker.clinic_settings``), so the console can store nothing
``medspa clinic apply`` would refuse; numbers, menu and providers stay in the clinic's YAML file."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from console.api.framework import ApiCall, ApiModel, api
from console.problems import Problem
from domain.staff_access import Permission
from worker.clinic_config import DAYS, ClinicConfigError
from worker.clinic_settings import StoredSettings, read_settings, update_settings


class ClinicSettingsOut(BaseModel):
    timezone: str = Field(description="the clinic's zone: hours and dates are local to it (not editable here)")
    business_hours: dict[str, list[str]] = Field(description="mon..sun: opening hours as HH:MM-HH:MM; [] = closed")
    holidays: list[date] = Field(description="dates the clinic is closed")
    policies: dict[str, Any] = Field(description="the clinic's policies; quiet_hours is {start, end} (HH:MM)")


class SettingsEdit(ApiModel):
    """Any of the three; each given one replaces the stored one, except policies, which are merged by name."""

    business_hours: dict[str, Any] | None = Field(
        default=None, description='e.g. {"mon": ["09:00-13:00", "14:00-18:00"], "sun": []}; days left out: closed'
    )
    holidays: list[date] | None = Field(default=None, max_length=400)
    policies: dict[str, Any] | None = Field(
        default=None, description='known policies by name, e.g. {"quiet_hours": {"start": "09:00", "end": "20:00"}}'
    )


class SettingsUpdated(BaseModel):
    settings: ClinicSettingsOut
    changes: list[str] = Field(description="what changed, one line each (empty: nothing did)")


def settings_out(stored: StoredSettings) -> ClinicSettingsOut:
    return ClinicSettingsOut(
        timezone=stored.timezone,
        business_hours={day: [f"{a}-{b}" for a, b in stored.business_hours.get(day, [])] for day in DAYS},
        holidays=[date.fromisoformat(d) for d in stored.holidays],
        policies=stored.policies,
    )


def settings_problem(exc: ClinicConfigError) -> Problem:
    message = str(exc)
    where, _, why = message.partition(": ")
    field = where if why and " " not in where else "settings"
    return Problem(
        400,
        "Invalid input",
        message,
        kind="validation",
        errors=[{"field": field, "message": why or message}],
    )


@api(
    "GET",
    "/clinics/{clinic_id:int}/settings",
    summary="The clinic's hours, closed dates and policies (owners only)",
    tag="settings",
    permission=Permission.SETTINGS_MANAGE,
    response=ClinicSettingsOut,
)
def get_settings(call: ApiCall) -> ClinicSettingsOut:
    return settings_out(read_settings(call.session, call.clinic.clinic_id))


def apply_edit(call: ApiCall, edit: dict[str, Any]) -> SettingsUpdated:
    try:
        result = update_settings(call.session, call.clinic.clinic_id, edit)
    except ClinicConfigError as exc:
        raise settings_problem(exc) from None
    if result.changes:
        call.audit(
            "settings.updated",
            target_type="clinic",
            target_id=call.clinic.clinic_id,
            detail={"changes": result.changes},
        )
    return SettingsUpdated(settings=settings_out(result.settings), changes=result.changes)


@api(
    "PATCH",
    "/clinics/{clinic_id:int}/settings",
    summary="Change the clinic's hours, closed dates or policies (owners only; validated like the clinic file)",
    tag="settings",
    permission=Permission.SETTINGS_MANAGE,
    body=SettingsEdit,
    response=SettingsUpdated,
)
def update_clinic_settings(call: ApiCall) -> SettingsUpdated:
    """Errors name the field and the rule (``business_hours.mon: time range 18:00-09:00 ends before it starts``);
    nothing is stored unless everything is valid.  The agent and the senders see the change within a minute."""
    body: SettingsEdit = call.body
    edit = body.model_dump(mode="json", exclude_none=True)
    if not edit:
        raise Problem(
            400,
            "Invalid input",
            "Give business_hours, holidays or policies.",
            kind="validation",
            errors=[{"field": "settings", "message": "nothing to change"}],
        )
    return apply_edit(call, edit)
