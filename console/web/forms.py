"""Forms posted from the console's pages: the same access check as the API and the pages (authenticate → CSRF
from the form's ``csrf_token`` field and the Origin → clinic membership → role), one transaction, then the
handler — which calls the very function the API endpoint calls — and what it left for after the commit.

A handler returns a local path to redirect to (post/redirect/get: 303) or a page to show (its own status: a form
that did not validate comes back with the values typed and the errors, 400 or 409).  Pages for the features
with forms live in ``calendar_pages``, ``campaign_pages``, ``kb_pages`` and ``admin_pages``; ``feature_pages()`` imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.access import CSRF_FIELD, authenticate, authorize_clinic, check_csrf
from console.api.framework import ApiCall, request_facts, request_scope, run_after_commit
from console.problems import Problem
from console.runtime import ConsoleRuntime
from console.web.pages import _nav as nav_context  # the pages' own header context (user, clinic, permissions)
from console.web.pages import error_page
from console.web.render import render
from domain.staff_access import Permission

MAX_FORM_BYTES = 128 * 1024
MAX_FORM_FIELDS = 300
# What a redirect after a change may say (``?notice=…``): known keys only, never text from the request.
NOTICES = {
    "created": "Created.",
    "saved": "Saved.",
    "deleted": "Deleted.",
    "scheduled": "Scheduled.",
    "sending": "Sending: the workers send it, paced and within each recipient's allowed hours.",
    "paused": "Paused: queued texts were taken back until you resume.",
    "resumed": "Resumed.",
    "cancelled": "Cancelled: nothing more is sent.",
    "no-change": "Nothing changed.",
    "added": "Added to the staff.",
    "role": "Role changed.",
    "removed": "Removed from this clinic's staff.",
    "disabled": "Disabled: signed out everywhere.",
    "enabled": "Enabled.",
    "password": "Password set: their sessions were signed out and their API tokens no longer work.",
    "booked": "Booked.",
    "moved": "Moved.",
    "appointment-cancelled": "Cancelled: the slot is free again.",
    "checked-in": "Checked in.",
    "completed": "Completed.",
    "no-show": "Marked a no-show.",
    "blocked": "Time blocked.",
}


class FormData:
    """A posted form: one value per name (``get``), or all values of a repeated name (``all``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str = "") -> str:
        for key, value in self._items:
            if key == name:
                return value
        return default

    def all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key == name]

    def optional(self, name: str) -> str | None:
        value = self.get(name).strip()
        return value or None

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in self._items if key != CSRF_FIELD}


@dataclass(frozen=True)
class Shown:
    """A page to show in answer to a form (the form again, with ``errors``, or a result such as a preview)."""

    template: str
    context: dict[str, Any]
    status: int = 200


FormHandler = Callable[[ApiCall, FormData], "str | Shown"]


@dataclass(frozen=True)
class FormSpec:
    path: str
    permission: Permission
    handler: FormHandler


FORMS: list[FormSpec] = []


def form(path: str, *, permission: Permission) -> Callable[[FormHandler], FormHandler]:
    def register(handler: FormHandler) -> FormHandler:
        FORMS.append(FormSpec(path, permission, handler))
        return handler

    return register


def notice(key: str | None) -> str:
    return NOTICES.get(key or "", "")


def problem_errors(problem: Problem) -> list[str]:
    """The lines a form shows for a refused change (the problem's field errors, else its detail)."""
    if problem.errors:
        return [f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in problem.errors]
    return [problem.detail or problem.title]


@dataclass
class _Outcome:
    redirect: str | None = None
    shown: Shown | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _run(spec: FormSpec, runtime: ConsoleRuntime, facts: Any, path_params: dict[str, Any], data: FormData) -> _Outcome:
    clinic_id = path_params["clinic_id"]
    try:
        with request_scope(runtime, clinic_id) as session:
            principal = authenticate(session, runtime, facts)
            check_csrf(principal, facts, runtime)
            access = authorize_clinic(session, principal, clinic_id, spec.permission)
            call = ApiCall(runtime, session, principal, access, path_params, None, None, facts)
            result = spec.handler(call, data)
            if isinstance(result, str):
                outcome = _Outcome(redirect=result)
            else:
                outcome = _Outcome(shown=result, context={**nav_context(call), **result.context})
                if result.status >= 400:
                    raise _Refused(outcome)  # whatever the handler wrote before refusing is rolled back
    except _Refused as refused:
        return refused.outcome
    run_after_commit(call)
    return outcome


class _Refused(Exception):
    def __init__(self, outcome: _Outcome) -> None:
        super().__init__("form refused")
        self.outcome = outcome


async def _read_form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise Problem(413, "Form too large", f"At most {MAX_FORM_BYTES} bytes.", kind="too-large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return FormData([])  # not a form of ours: no CSRF token either, so the access check refuses it
    async with request.form(max_files=0, max_fields=MAX_FORM_FIELDS) as posted:
        return FormData([(k, v) for k, v in posted.multi_items() if isinstance(v, str)])


def _endpoint(spec: FormSpec, runtime: ConsoleRuntime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        if request.headers.get("authorization"):  # forms are for browsers; tokens are for the API
            return error_page(Problem(401, "Not signed in", "Sign in to use the console."), signed_in=False)
        try:
            data = await _read_form(request)
            facts = request_facts(request, runtime, data.get(CSRF_FIELD) or None)
            outcome = await run_in_threadpool(_run, spec, runtime, facts, dict(request.path_params), data)
        except Problem as problem:
            if problem.status == 401:
                return RedirectResponse(f"/sign-in?next={quote(request.url.path, safe='')}", status_code=303)
            return error_page(problem)
        if outcome.redirect is not None:
            return RedirectResponse(outcome.redirect, status_code=303)
        assert outcome.shown is not None
        return render(outcome.shown.template, outcome.context, status=outcome.shown.status)

    return endpoint


def feature_pages() -> None:
    """Import the page modules of the console's features with forms (registers their pages and forms)."""
    from console.web import admin_pages, calendar_pages, campaign_pages, kb_pages  # noqa: F401


def routes(runtime: ConsoleRuntime) -> list[Route]:
    feature_pages()
    return [Route(spec.path, _endpoint(spec, runtime), methods=["POST"]) for spec in FORMS]


def validated(call: ApiCall, model: type[Any], values: dict[str, Any]) -> ApiCall:
    """``call`` carrying ``values`` validated as the API endpoint's body ``model`` (a ``Problem`` 400 if not)."""
    from pydantic import ValidationError

    from console.api.framework import validation_problem

    try:
        call.body = model.model_validate(values)
    except ValidationError as exc:
        raise validation_problem(exc, "form") from None
    return call
