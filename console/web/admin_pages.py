"""Owner pages: the clinic's settings (hours, closed dates, policies, quiet hours) and its staff (add, change a
role, remove from the clinic, disable or enable, reset a password).  Reads and writes are the API's own handlers
(``console/api/settings.py``, ``staff.py``, ``admin.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from console.api.admin import list_staff
from console.api.framework import ApiCall, ApiModel
from console.api.schedule import list_providers
from console.api.settings import ClinicSettingsOut, apply_edit, get_settings
from console.api.staff import (
    PasswordReset,
    RoleChange,
    StaffAdd,
    add_staff,
    change_role,
    disable_staff,
    enable_staff,
    remove_staff,
    reset_staff_password,
)
from console.problems import Problem
from console.web.forms import FormData, Shown, form, notice, problem_errors, validated
from console.web.pages import PageResult, page
from domain.staff_access import Permission, StaffRole
from worker.clinic_config import DAYS
from worker.clinic_settings import EDITABLE_POLICIES

DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True))
# How each typed policy is edited (the rules themselves are ``worker.clinic_config.Policies``'s).
NUMBER_POLICIES = (
    ("cancellation_window_hours", "Free cancellation up to (hours before)"),
    ("late_cancel_fee_cents", "Late-cancellation fee (cents)"),
    ("deposit_hold_minutes", "Hold a slot for the deposit (minutes)"),
    ("min_lead_minutes", "Earliest booking (minutes from now)"),
    ("marketing_cap_per_week", "Marketing texts per person per week, at most"),
)
TEXT_POLICIES = (
    ("deposit_policy", "Deposit policy"),
    ("payment_methods", "Payment methods"),
    ("parking", "Parking"),
    ("review_url", "Review link"),
    ("opt_out_footer", "Opt-out line on marketing texts"),
)
FLAG_POLICIES = (
    ("deposit_refund_outside_window", "Refund the deposit when cancelled in time"),
    ("vision_model", "Let a vision-capable model see patients' photos"),
)
# Edited elsewhere on the page (quiet hours) or only in the clinic file and the API (the nested missed-call block).
NOT_FORM_FIELDS = {"quiet_hours", "missed_calls"}
assert {n for n, _ in NUMBER_POLICIES + TEXT_POLICIES + FLAG_POLICIES} | NOT_FORM_FIELDS == set(EDITABLE_POLICIES)


class NoticeQuery(ApiModel):
    notice: str | None = Field(default=None, max_length=32)


# ------------------------------------------------------------------ settings
def _settings_values(settings: ClinicSettingsOut) -> dict[str, Any]:
    quiet = settings.policies.get("quiet_hours") or {}
    return {
        **{f"hours_{day}": ", ".join(settings.business_hours.get(day, [])) for day in DAYS},
        "holidays": "\n".join(d.isoformat() for d in settings.holidays),
        "quiet_start": quiet.get("start", ""),
        "quiet_end": quiet.get("end", ""),
        **{name: settings.policies.get(name, "") for name, _ in NUMBER_POLICIES + TEXT_POLICIES},
        **{name: bool(settings.policies.get(name)) for name, _ in FLAG_POLICIES},
    }


def _settings_context(call: ApiCall, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "title": "Clinic settings",
        "timezone": call.clinic.membership.timezone,
        "values": values,
        "days": DAY_NAMES,
        "number_policies": NUMBER_POLICIES,
        "text_policies": TEXT_POLICIES,
        "flag_policies": FLAG_POLICIES,
        "errors": [],
        "notice": "",
        **extra,
    }


@page("/clinics/{clinic_id:int}/settings", permission=Permission.SETTINGS_MANAGE, query=NoticeQuery)
def settings_page(call: ApiCall) -> PageResult:
    values = _settings_values(get_settings(call))
    return PageResult("settings.html", _settings_context(call, values, notice=notice(call.query.notice)))


def _hours(value: str) -> str:
    value = value.strip()
    return "closed" if not value or value.lower() == "closed" else value


def _number(value: str) -> Any:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else value  # anything else: the validator says why


@form("/clinics/{clinic_id:int}/settings", permission=Permission.SETTINGS_MANAGE)
def save_settings(call: ApiCall, data: FormData) -> str | Shown:
    values: dict[str, Any] = {**data.as_dict(), **{name: bool(data.get(name)) for name, _ in FLAG_POLICIES}}
    edit = {
        "business_hours": {day: _hours(data.get(f"hours_{day}")) for day in DAYS},
        "holidays": [line.strip() for line in data.get("holidays").replace(",", "\n").splitlines() if line.strip()],
        "policies": {
            "quiet_hours": {"start": data.get("quiet_start"), "end": data.get("quiet_end")},
            **{name: _number(data.get(name)) for name, _ in NUMBER_POLICIES},
            **{name: data.get(name).strip() for name, _ in TEXT_POLICIES},
            **{name: bool(data.get(name)) for name, _ in FLAG_POLICIES},
        },
    }
    try:
        result = apply_edit(call, edit)
    except Problem as problem:
        if problem.status in (401, 403):
            raise
        context = _settings_context(call, values, errors=problem_errors(problem))
        return Shown("settings.html", context, problem.status)
    return f"/clinics/{call.clinic.clinic_id}/settings?notice={'saved' if result.changes else 'no-change'}"


# ------------------------------------------------------------------ staff
def _staff_context(call: ApiCall, **extra: Any) -> dict[str, Any]:
    providers = [p for p in list_providers(call).items if p.active]
    return {
        "title": "Staff",
        "staff": list_staff(call).items,
        "providers": providers,
        "roles": [r.value for r in StaffRole],
        "me": call.principal.staff_user_id,
        "values": {},
        "errors": [],
        "notice": "",
        **extra,
    }


@page("/clinics/{clinic_id:int}/staff", permission=Permission.STAFF_MANAGE, query=NoticeQuery)
def staff_page(call: ApiCall) -> PageResult:
    return PageResult("staff.html", _staff_context(call, notice=notice(call.query.notice)))


def _provider(data: FormData) -> int | None:
    value = data.get("provider_id").strip()
    return int(value) if value.isdigit() and data.get("role") == StaffRole.PROVIDER.value else None


def _staff_change(call: ApiCall, values: dict[str, Any], change: Any, done: str) -> str | Shown:
    try:
        change()
    except Problem as problem:
        if problem.status in (401, 403):
            raise
        return Shown("staff.html", _staff_context(call, values=values, errors=problem_errors(problem)), problem.status)
    return f"/clinics/{call.clinic.clinic_id}/staff?notice={done}"


@form("/clinics/{clinic_id:int}/staff", permission=Permission.STAFF_MANAGE)
def staff_add(call: ApiCall, data: FormData) -> str | Shown:
    body = {
        "email": data.get("email").strip(),
        "role": data.get("role"),
        "display_name": data.get("display_name").strip(),
        "provider_id": _provider(data),
        "password": data.get("password") or None,
    }
    values = {k: v for k, v in data.as_dict().items() if k != "password"}  # a password is never sent back
    return _staff_change(call, values, lambda: add_staff(validated(call, StaffAdd, body)), "added")


@form("/clinics/{clinic_id:int}/staff/{staff_user_id:int}/role", permission=Permission.STAFF_MANAGE)
def staff_role(call: ApiCall, data: FormData) -> str | Shown:
    body = {"role": data.get("role"), "provider_id": _provider(data)}
    return _staff_change(call, {}, lambda: change_role(validated(call, RoleChange, body)), "role")


@form("/clinics/{clinic_id:int}/staff/{staff_user_id:int}/disable", permission=Permission.STAFF_MANAGE)
def staff_disable(call: ApiCall, data: FormData) -> str | Shown:
    return _staff_change(call, {}, lambda: disable_staff(call), "disabled")


@form("/clinics/{clinic_id:int}/staff/{staff_user_id:int}/enable", permission=Permission.STAFF_MANAGE)
def staff_enable(call: ApiCall, data: FormData) -> str | Shown:
    return _staff_change(call, {}, lambda: enable_staff(call), "enabled")


@form("/clinics/{clinic_id:int}/staff/{staff_user_id:int}/password", permission=Permission.STAFF_MANAGE)
def staff_password(call: ApiCall, data: FormData) -> str | Shown:
    body = {"password": data.get("password")}
    return _staff_change(call, {}, lambda: reset_staff_password(validated(call, PasswordReset, body)), "password")


@form("/clinics/{clinic_id:int}/staff/{staff_user_id:int}/remove", permission=Permission.STAFF_MANAGE)
def staff_remove(call: ApiCall, data: FormData) -> str | Shown:
    return _staff_change(call, {}, lambda: remove_staff(call), "removed")
