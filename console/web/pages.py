"""The console pages: each goes through the same access check as the API (``console.access``) and the same
loaders as the API's endpoints, then renders a template.  Not signed in → the sign-in page; not allowed →
a 403 page that shows nothing of the record asked for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import store
from console.access import authenticate, authorize_clinic, check_csrf
from console.api.admin import AuditQuery, list_audit
from console.api.clients import ClientSearchQuery, load_profile, search_clients
from console.api.conversations import InboxQuery, MessagesQuery, load_conversation, load_inbox
from console.api.framework import ApiCall, request_facts, request_scope, validation_problem
from console.problems import Problem
from console.runtime import ConsoleRuntime
from console.web.render import render
from domain.staff_access import Permission
from worker.staff_takeover import MAX_REPLY_CHARS


@dataclass(frozen=True)
class PageResult:
    template: str
    context: dict[str, Any]


@dataclass(frozen=True)
class PageSpec:
    path: str
    permission: Permission | None
    query_model: type[BaseModel] | None
    handler: Callable[[ApiCall], PageResult | str]  # a str is a local redirect


PAGES: list[PageSpec] = []


def page(
    path: str, *, permission: Permission | None = None, query: type[BaseModel] | None = None
) -> Callable[[Callable[[ApiCall], PageResult | str]], Callable[[ApiCall], PageResult | str]]:
    def register(handler: Callable[[ApiCall], PageResult | str]) -> Callable[[ApiCall], PageResult | str]:
        PAGES.append(PageSpec(path, permission, query, handler))
        return handler

    return register


def _nav(call: ApiCall) -> dict[str, Any]:
    memberships = store.memberships_of(call.session, call.principal.staff_user_id)
    access = call.access
    return {
        "user": call.principal.user,
        "memberships": memberships,
        "clinic": access.membership if access else None,
        "can": {p.name.lower(): True for p in access.permissions} if access else {},
        "csrf_token": call.principal.session.csrf_token if call.principal.session else "",
    }


def _run(spec: PageSpec, runtime: ConsoleRuntime, facts: Any, path_params: dict[str, Any], raw_query: dict[str, str]):
    clinic_id = path_params.get("clinic_id")
    with request_scope(runtime, clinic_id) as session:
        principal = authenticate(session, runtime, facts)
        check_csrf(principal, facts, runtime)
        access = authorize_clinic(session, principal, clinic_id, spec.permission) if clinic_id is not None else None
        query = None
        if spec.query_model is not None:
            try:
                query = spec.query_model.model_validate({k: v for k, v in raw_query.items() if v != ""})
            except ValidationError as exc:
                raise validation_problem(exc, "query parameters") from None
        call = ApiCall(runtime, session, principal, access, path_params, query, None, facts)
        result = spec.handler(call)
        if isinstance(result, str):
            return result
        return PageResult(result.template, {**_nav(call), **result.context, "query": query})


def error_page(problem: Problem, *, signed_in: bool = True) -> Response:
    return render(
        "error.html",
        {"status": problem.status, "title": problem.title, "detail": problem.detail, "signed_in": signed_in},
        status=problem.status,
    )


def _endpoint(spec: PageSpec, runtime: ConsoleRuntime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        facts = request_facts(request, runtime)
        if facts.bearer_token is not None:  # pages are for browsers; tokens are for the API
            return error_page(Problem(401, "Not signed in", "Sign in to use the console."), signed_in=False)
        try:
            result = await run_in_threadpool(
                _run, spec, runtime, facts, dict(request.path_params), dict(request.query_params)
            )
        except Problem as problem:
            if problem.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)
            return error_page(problem)
        if isinstance(result, str):
            return RedirectResponse(result, status_code=303)
        template = result.template
        if request.headers.get("hx-request") == "true" and "fragment" in result.context:
            template = result.context["fragment"]
        return render(template, result.context)

    return endpoint


def routes(runtime: ConsoleRuntime) -> list[Route]:
    return [Route(spec.path, _endpoint(spec, runtime), methods=["GET"]) for spec in PAGES]


# ------------------------------------------------------------------ the pages
@page("/clinics")
def clinic_picker(call: ApiCall) -> PageResult | str:
    memberships = store.memberships_of(call.session, call.principal.staff_user_id)
    if len(memberships) == 1:
        return f"/clinics/{memberships[0].clinic_id}/inbox"
    return PageResult("clinics.html", {"title": "Choose a clinic"})


@page("/clinics/{clinic_id:int}")
def clinic_home(call: ApiCall) -> PageResult | str:
    if call.clinic.can(Permission.CONVERSATIONS_READ):
        return f"/clinics/{call.clinic.clinic_id}/inbox"
    return f"/clinics/{call.clinic.clinic_id}/calendar"


@page("/clinics/{clinic_id:int}/inbox", permission=Permission.CONVERSATIONS_READ, query=InboxQuery)
def inbox_page(call: ApiCall) -> PageResult:
    return PageResult(
        "inbox.html", {"title": "Inbox", "page": load_inbox(call, call.query), "fragment": "_inbox_list.html"}
    )


class ConversationPageQuery(MessagesQuery):
    done: Literal["taken-over", "replied", "handed-back"] | None = None  # the notice after a form's redirect


@page(
    "/clinics/{clinic_id:int}/conversations/{conversation_id:int}",
    permission=Permission.CONVERSATIONS_READ,
    query=ConversationPageQuery,
)
def conversation_page(call: ApiCall) -> PageResult:
    query: ConversationPageQuery = call.query
    loaded = load_conversation(
        call, int(call.path_params["conversation_id"]), MessagesQuery(cursor=query.cursor, limit=query.limit)
    )
    return PageResult(
        "conversation.html",
        {
            "title": "Conversation",
            "conversation": loaded.conversation,
            "messages": list(reversed(loaded.items)),
            "next_cursor": loaded.next_cursor,
            "can_write": call.clinic.can(Permission.CONVERSATIONS_WRITE),
            "done": query.done,
            "max_reply": MAX_REPLY_CHARS,
            "fragment": "_transcript.html",
        },
    )


@page("/clinics/{clinic_id:int}/clients", permission=Permission.CLIENTS_READ, query=ClientSearchQuery)
def clients_page(call: ApiCall) -> PageResult:
    return PageResult("clients.html", {"title": "Clients", "page": search_clients(call)})


@page("/clinics/{clinic_id:int}/clients/{client_id:int}", permission=Permission.CLIENTS_READ)
def client_page(call: ApiCall) -> PageResult:
    profile = load_profile(call, int(call.path_params["client_id"]))
    return PageResult("client.html", {"title": profile.name or f"Client {profile.id}", "client": profile})


@page("/clinics/{clinic_id:int}/audit", permission=Permission.AUDIT_READ, query=AuditQuery)
def audit_page(call: ApiCall) -> PageResult:
    return PageResult("audit.html", {"title": "Audit log", "page": list_audit(call)})
