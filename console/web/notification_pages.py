"""The owners' page for handoff notifications: who hears about handoffs (on-call numbers and addresses), staff
quiet hours, the batching window, and the notifications sent lately.  The same loader, validation and audit as
``PUT /api/v1/clinics/{id}/notification-settings`` (``console/api/notifications.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.access import authenticate, authorize_clinic, check_csrf
from console.api.framework import ApiCall, ApiModel, request_facts, request_scope, validation_problem
from console.api.notifications import NotificationSettingsIn, load_settings, save_settings
from console.problems import Problem
from console.runtime import ConsoleRuntime
from console.web.pages import PageResult, error_page, page
from domain.staff_access import Permission

PATH = "/clinics/{clinic_id:int}/notifications"
_SPLIT = re.compile(r"[\s,;]+")


class NotificationsPageQuery(ApiModel):
    saved: Literal["1"] | None = None


@page(PATH, permission=Permission.SETTINGS_MANAGE, query=NotificationsPageQuery)
def notifications_page(call: ApiCall) -> PageResult:
    query: NotificationsPageQuery = call.query
    return PageResult(
        "notifications.html",
        {"title": "Notifications", "settings": load_settings(call), "saved": query.saved == "1"},
    )


def form_to_settings(form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the API's body: lists split on commas, spaces or lines; a blank quiet-hours or window
    field means the default, "none" no quiet hours."""
    quiet = form.get("quiet_hours", "").strip()
    window = form.get("batch_window_s", "").strip()
    return {
        "sms_numbers": [n for n in _SPLIT.split(form.get("sms_numbers", "")) if n],
        "emails": [e for e in _SPLIT.split(form.get("emails", "")) if e],
        "quiet_hours": None if not quiet else ("" if quiet.lower() == "none" else quiet),
        "batch_window_s": window or None,
    }


def _save(runtime: ConsoleRuntime, facts: Any, clinic_id: int, form: dict[str, str]) -> str:
    with request_scope(runtime, clinic_id) as session:
        principal = authenticate(session, runtime, facts)
        check_csrf(principal, facts, runtime)
        access = authorize_clinic(session, principal, clinic_id, Permission.SETTINGS_MANAGE)
        try:
            body = NotificationSettingsIn.model_validate(form_to_settings(form))
        except ValidationError as exc:
            raise validation_problem(exc, "settings") from None
        save_settings(ApiCall(runtime, session, principal, access, {"clinic_id": clinic_id}, None, None, facts), body)
    return f"/clinics/{clinic_id}/notifications?saved=1"


def _post(runtime: ConsoleRuntime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        form_data = await request.form(max_files=0, max_fields=10)
        form = {k: v for k, v in form_data.items() if isinstance(v, str)}
        facts = request_facts(request, runtime, csrf_token=form.get("csrf_token") or None)
        if facts.bearer_token is not None:
            return error_page(Problem(401, "Not signed in", "Sign in to use the console."), signed_in=False)
        try:
            target = await run_in_threadpool(_save, runtime, facts, int(request.path_params["clinic_id"]), form)
        except Problem as problem:
            if problem.status == 401:
                return RedirectResponse("/sign-in", status_code=303)
            return error_page(problem)
        return RedirectResponse(target, status_code=303)

    return endpoint


def routes(runtime: ConsoleRuntime) -> list[Route]:
    return [Route(PATH, _post(runtime), methods=["POST"])]
