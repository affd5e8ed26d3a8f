"""The calendar page (a day per provider) and its forms: book, block time, and per appointment check in, complete,
no-show, move, cancel.  Each form calls the API endpoint's own handler (``console/api/calendar_write.py``,
``visits.py``) with the values validated as that endpoint's body; a refused change shows the day again with the
reason.  Times typed in the page are clinic-local."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from console.api.calendar_models import BlockIn, BookIn, CancelIn, MoveIn
from console.api.calendar_write import (
    block_time,
    book_appointment,
    cancel_appointment,
    move_appointment,
)
from console.api.framework import ApiCall
from console.api.schedule import DayQuery, list_providers, list_services, load_day
from console.api.visits import CompleteIn, check_in_appointment, complete_appointment, no_show_appointment
from console.problems import Problem
from console.web.forms import FormData, Shown, form, notice, problem_errors, validated
from console.web.pages import PageResult, page
from domain.appointments import LIVE_STATUSES
from domain.staff_access import Permission
from domain.visit_import import parse_amount


class CalendarPageQuery(DayQuery):
    notice: str | None = Field(default=None, max_length=32)


def calendar_context(call: ApiCall, query: DayQuery) -> dict[str, Any]:
    day, provider_id, entries = load_day(call, query)
    providers = [p for p in list_providers(call).items if p.active]
    own = call.clinic.own_provider_id
    if own is not None:
        providers = [p for p in providers if p.id == own]
    elif provider_id is not None:
        providers = [p for p in providers if p.id == provider_id]
    columns = [(p, [e for e in entries.items if e.provider_id == p.id]) for p in providers]
    can_write = call.clinic.can(Permission.SCHEDULE_WRITE)
    return {
        "title": "Calendar",
        "day": day,
        "previous_day": day - timedelta(days=1),
        "next_day": day + timedelta(days=1),
        "provider_id": provider_id,
        "all_providers": list_providers(call).items if own is None else [],
        "columns": columns,
        "truncated": entries.next_cursor is not None,
        "can_write": can_write,
        "live_statuses": sorted(LIVE_STATUSES),
        "services": [s for s in list_services(call).items if s.active] if can_write else [],
        "bookable_providers": providers if own is not None else [p for p in list_providers(call).items if p.active],
        "errors": [],
        "notice": "",
    }


@page("/clinics/{clinic_id:int}/calendar", permission=Permission.APPOINTMENTS_READ, query=CalendarPageQuery)
def calendar_page(call: ApiCall) -> PageResult:
    return PageResult("calendar.html", {**calendar_context(call, call.query), "notice": notice(call.query.notice)})


# ---------------------------------------------------------------------------------------------- forms
def _day(data: FormData) -> date | None:
    try:
        return date.fromisoformat(data.get("date"))
    except ValueError:
        return None


def _back(call: ApiCall, data: FormData, key: str) -> str:
    day = _day(data)
    return f"/clinics/{call.clinic.clinic_id}/calendar?{f'date={day.isoformat()}&' if day else ''}notice={key}"


def _local(call: ApiCall, value: str) -> str:
    """A ``datetime-local`` value as ISO 8601 with the clinic's offset (unreadable: as typed, for the error)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(call.clinic.membership.timezone))
    return moment.isoformat()


def _submit(
    call: ApiCall,
    data: FormData,
    model: type[BaseModel] | None,
    values: dict[str, Any],
    handler: Callable[[ApiCall], Any],
    key: str,
) -> str | Shown:
    try:
        handler(validated(call, model, values) if model is not None else call)
    except Problem as problem:
        if problem.status in (403, 404):
            raise
        context = {**calendar_context(call, DayQuery(date=_day(data))), "errors": problem_errors(problem)}
        return Shown("calendar.html", context, status=problem.status)
    return _back(call, data, key)


def _ticked(data: FormData, name: str) -> bool:
    """A checkbox: posted only when ticked (the page ticks "Text the patient" for a move or cancel, as the API's
    default is; an unticked box is a deliberate no)."""
    return bool(data.get(name))


def _amount(value: str) -> int | None:
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise Problem(
            400,
            "Invalid input",
            f"amount_charged_cents: {exc}",
            kind="validation",
            errors=[{"field": "amount_charged_cents", "message": str(exc)}],
        ) from None


@form("/clinics/{clinic_id:int}/calendar/book", permission=Permission.SCHEDULE_WRITE)
def calendar_book(call: ApiCall, data: FormData) -> str | Shown:
    values = {
        "client_id": data.get("client_id"),
        "service_id": data.get("service_id"),
        "provider_id": data.optional("provider_id"),
        "starts_at": _local(call, data.get("starts_at")),
        "notes": data.get("notes"),
        "text_patient": _ticked(data, "text_patient"),
    }
    return _submit(call, data, BookIn, values, book_appointment, "booked")


@form("/clinics/{clinic_id:int}/calendar/block", permission=Permission.SCHEDULE_WRITE)
def calendar_block(call: ApiCall, data: FormData) -> str | Shown:
    values = {
        "provider_id": data.get("provider_id"),
        "starts_at": _local(call, data.get("starts_at")),
        "ends_at": _local(call, data.get("ends_at")),
        "reason": data.get("reason"),
    }
    return _submit(call, data, BlockIn, values, block_time, "blocked")


@form("/clinics/{clinic_id:int}/calendar/{appointment_id:int}/check-in", permission=Permission.SCHEDULE_WRITE)
def calendar_check_in(call: ApiCall, data: FormData) -> str | Shown:
    return _submit(call, data, None, {}, check_in_appointment, "checked-in")


@form("/clinics/{clinic_id:int}/calendar/{appointment_id:int}/no-show", permission=Permission.SCHEDULE_WRITE)
def calendar_no_show(call: ApiCall, data: FormData) -> str | Shown:
    return _submit(call, data, None, {}, no_show_appointment, "no-show")


@form("/clinics/{clinic_id:int}/calendar/{appointment_id:int}/complete", permission=Permission.SCHEDULE_WRITE)
def calendar_complete(call: ApiCall, data: FormData) -> str | Shown:
    try:
        values = {"amount_charged_cents": _amount(data.get("amount")), "summary": data.get("summary")}
    except Problem as problem:
        context = {**calendar_context(call, DayQuery(date=_day(data))), "errors": problem_errors(problem)}
        return Shown("calendar.html", context, status=problem.status)
    return _submit(call, data, CompleteIn, values, complete_appointment, "completed")


@form("/clinics/{clinic_id:int}/calendar/{appointment_id:int}/move", permission=Permission.SCHEDULE_WRITE)
def calendar_move(call: ApiCall, data: FormData) -> str | Shown:
    values = {
        "starts_at": _local(call, data.get("starts_at")),
        "provider_id": data.optional("provider_id"),
        "text_patient": _ticked(data, "text_patient"),
    }
    return _submit(call, data, MoveIn, values, move_appointment, "moved")


@form("/clinics/{clinic_id:int}/calendar/{appointment_id:int}/cancel", permission=Permission.SCHEDULE_WRITE)
def calendar_cancel(call: ApiCall, data: FormData) -> str | Shown:
    values = {"reason": data.get("reason"), "text_patient": _ticked(data, "text_patient")}
    return _submit(call, data, CancelIn, values, cancel_appointment, "appointment-cancelled")
