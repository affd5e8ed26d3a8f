"""The API's plumbing: one decorator per endpoint does authentication, CSRF, tenancy, role checks, input
validation (pydantic), problem-details errors and JSON output, and records what the OpenAPI document needs.

Handlers are plain synchronous functions run in Starlette's thread pool inside one database transaction
(``Database.tenant_scope`` for the clinic in the URL, so row-level security bounds every statement).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console import audit
from console.access import (
    CSRF_HEADER,
    ClinicAccess,
    Principal,
    RequestFacts,
    authenticate,
    authorize_clinic,
    check_csrf,
    request_origin,
)
from console.problems import Problem, problem_response
from console.runtime import ConsoleRuntime
from domain.staff_access import Permission

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

T = TypeVar("T")
Handler = TypeVar("Handler", bound=Callable[["ApiCall"], BaseModel])


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BinaryFile(BaseModel):
    """A handler's file response instead of JSON (a patient's photo): the bytes and their media type.  Served with
    ``no-store``, ``nosniff`` and ``inline`` so a browser shows it and keeps no copy."""

    content: bytes
    media_type: str


class Page(BaseModel, Generic[T]):
    """A page of results; pass ``next_cursor`` back as ``cursor`` for the next one (absent on the last page)."""

    items: list[T]
    next_cursor: str | None = None


class PageQuery(ApiModel):
    cursor: str | None = Field(default=None, description="next_cursor of the previous page", max_length=512)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="items per page")


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# A cursor's int is a row id unless its decoder names another range (``decode_cursor``): the key columns are
# bigint, and a value Postgres cannot hold fails the statement ("integer out of range": a 500, not a 400).
ROW_ID = range(1, 2**63)
CursorKind = type | range


def decode_cursor(cursor: str, kinds: tuple[CursorKind, ...]) -> tuple[Any, ...]:
    """The key values a cursor carries, typed; a cursor that is not one of ours is a clear 400.

    ``kinds``: ``int`` (a row id, ``ROW_ID``), a ``range`` (an int within it, e.g. the inbox's ranks), ``str``
    or ``datetime`` (with its offset).  A cursor comes back from the client, so each value is checked to be one
    we could have issued — in type *and* range — before it reaches a statement."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("shape")
        return tuple(
            None if value is None else _cursor_value(value, kind) for value, kind in zip(values, kinds, strict=True)
        )
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Problem(
            400,
            "Invalid input",
            "The cursor is not valid: pass next_cursor from the previous page unchanged.",
            kind="validation",
            errors=[{"field": "cursor", "message": "not a cursor this API issued"}],
        ) from None


def _cursor_value(value: Any, kind: CursorKind) -> Any:
    """One value of a cursor as ``kind``, or ValueError/TypeError."""
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError("datetime")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:  # ours are instants; a naive one would be read in the session's time zone
            raise ValueError("naive datetime")
        return moment
    if kind is int or isinstance(kind, range):
        bounds = kind if isinstance(kind, range) else ROW_ID
        if not isinstance(value, int) or isinstance(value, bool) or value not in bounds:
            raise ValueError("int")
        return value
    if kind is str:
        if not isinstance(value, str) or "\x00" in value:  # Postgres text holds no NUL
            raise ValueError("str")
        value.encode()  # a lone surrogate (valid JSON) is no UTF-8: UnicodeEncodeError, a ValueError
        return value
    raise AssertionError(f"no cursor kind {kind!r}")  # a handler's mistake, not the client's: a 500


@dataclass
class ApiCall:
    """What a handler gets: the transaction, the caller's access, validated input."""

    runtime: ConsoleRuntime
    session: Session
    principal: Principal
    access: ClinicAccess | None
    path_params: dict[str, Any]
    query: Any
    body: Any
    facts: RequestFacts
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    after_commit: list[Callable[[], object]] = field(default_factory=list)  # e.g. enqueue a job; run once committed

    @property
    def clinic(self) -> ClinicAccess:
        assert self.access is not None, "a clinic-scoped endpoint"
        return self.access

    def actor(self) -> audit.Actor:
        return audit.Actor(self.principal.staff_user_id, self.principal.user.email, self.facts.ip)

    def audit(self, action: str, **kwargs: Any) -> None:
        audit.record(self.session, self.clinic.clinic_id, self.actor(), action, **kwargs)


@dataclass(frozen=True)
class EndpointSpec:
    path: str
    method: str
    operation_id: str
    summary: str
    tag: str
    permission: Permission | None
    query_model: type[BaseModel] | None
    body_model: type[BaseModel] | None
    response_model: type[BaseModel]
    status_code: int
    handler: Callable[[ApiCall], BaseModel]
    description: str = ""

    @property
    def clinic_scoped(self) -> bool:
        return "{clinic_id" in self.path


ENDPOINTS: list[EndpointSpec] = []


def api(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    response: type[BaseModel],
    permission: Permission | None = None,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    status_code: int = 200,
) -> Callable[[Handler], Handler]:
    """Register a handler for ``method path`` (path relative to /api/v1, Starlette syntax ``{clinic_id:int}``).
    Every path under ``/clinics/{clinic_id}`` is clinic-scoped: membership and tenancy are enforced."""

    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(
            EndpointSpec(
                path=path,
                method=method,
                operation_id=handler.__name__,
                summary=summary,
                tag=tag,
                permission=permission,
                query_model=query,
                body_model=body,
                response_model=response,
                status_code=status_code,
                handler=handler,
                description=(handler.__doc__ or "").strip(),
            )
        )
        return handler

    return register


def validation_problem(exc: ValidationError, where: str) -> Problem:
    errors = [
        {"field": ".".join(str(p) for p in error["loc"]) or where, "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]
    listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(400, "Invalid input", f"Invalid {where}: {listed}", kind="validation", errors=errors)


def request_facts(request: Request, runtime: ConsoleRuntime, csrf_token: str | None = None) -> RequestFacts:
    authorization = request.headers.get("authorization", "")
    bearer = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        bearer = credentials.strip() if scheme.lower() == "bearer" else ""  # another scheme: refused, not ignored
    return RequestFacts(
        method=request.method,
        path=request.url.path,
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
        origin=request_origin(request.headers.get("origin"), request.headers.get("referer")),
        session_token=request.cookies.get(runtime.cookies.session),
        bearer_token=bearer,
        csrf_token=csrf_token or request.headers.get(CSRF_HEADER),
    )


@contextmanager
def request_scope(runtime: ConsoleRuntime, clinic_id: int | None) -> Iterator[Session]:
    """The request's one transaction: the clinic's tenant scope, or (no clinic yet) the directory scope."""
    if clinic_id is not None:
        with runtime.database.tenant_scope(clinic_id) as session:
            yield session
    else:
        with runtime.database.directory_scope() as session:
            yield session


def _run(
    spec: EndpointSpec,
    runtime: ConsoleRuntime,
    facts: RequestFacts,
    path_params: dict[str, Any],
    raw_query: dict[str, str],
    raw_body: bytes | None,
) -> tuple[int, Any]:
    clinic_id = path_params.get("clinic_id") if spec.clinic_scoped else None
    with request_scope(runtime, clinic_id) as session:
        principal = authenticate(session, runtime, facts)
        check_csrf(principal, facts, runtime)
        access = authorize_clinic(session, principal, clinic_id, spec.permission) if clinic_id is not None else None
        if access is None and spec.permission is not None:
            raise AssertionError(f"{spec.path}: a permission needs a clinic")
        query = body = None
        if spec.query_model is not None:
            try:
                query = spec.query_model.model_validate(raw_query)
            except ValidationError as exc:
                raise validation_problem(exc, "query parameters") from None
        elif raw_query:
            raise Problem(
                400, "Invalid input", f"Unexpected query parameters: {', '.join(sorted(raw_query))}", kind="validation"
            )
        if spec.body_model is not None:
            try:
                body = spec.body_model.model_validate_json(raw_body or b"")
            except ValidationError as exc:
                raise validation_problem(exc, "request body") from None
        call = ApiCall(runtime, session, principal, access, path_params, query, body, facts)
        result = spec.handler(call)
        payload: Any = result if isinstance(result, BinaryFile) else result.model_dump(mode="json")
    run_after_commit(call)
    return spec.status_code, payload


def run_after_commit(call: ApiCall) -> None:
    """What the handler left for after its transaction committed (never before: a job must find its rows); a failure
    here never undoes the commit (the sweepers pick committed work up)."""
    for hook in call.after_commit:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - the change is committed; a lost follow-up is logged, not a failure
            log.warning("after-commit step failed", extra={"error": type(exc).__name__, "path": call.facts.path})


def _endpoint(spec: EndpointSpec, runtime: ConsoleRuntime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            raw_body: bytes | None = None
            if spec.body_model is not None:
                content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type != "application/json":
                    raise Problem(
                        415, "Unsupported media type", "Send the body as application/json.", kind="media-type"
                    )
                declared = request.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                    raise Problem(413, "Body too large", f"At most {MAX_BODY_BYTES} bytes.", kind="too-large")
                raw_body = await request.body()
                if len(raw_body) > MAX_BODY_BYTES:
                    raise Problem(413, "Body too large", f"At most {MAX_BODY_BYTES} bytes.", kind="too-large")
            facts = request_facts(request, runtime)
            raw_query = dict(request.query_params)
            if len(raw_query) != len(request.query_params.multi_items()):
                raise Problem(400, "Invalid input", "A query parameter is repeated.", kind="validation")
            status, payload = await run_in_threadpool(
                _run, spec, runtime, facts, dict(request.path_params), raw_query, raw_body
            )
        except Problem as problem:
            return problem_response(problem, request.url.path)
        if isinstance(payload, BinaryFile):
            return Response(
                payload.content,
                status_code=status,
                media_type=payload.media_type,
                headers={
                    "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff",
                    "Content-Disposition": "inline",
                },
            )
        return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})

    return endpoint


def routes(runtime: ConsoleRuntime) -> list[Route]:
    return [
        Route(spec.path, _endpoint(spec, runtime), methods=[spec.method], name=spec.operation_id) for spec in ENDPOINTS
    ]
