"""The staff console's ASGI app: the JSON API (its own Starlette app, mounted at /api/v1), the pages, the
sign-in flows and vendored static files.  Run with ``medspa console`` (or ``uvicorn --factory
console.app:create_app``); the same process model and settings as the webhook app, on its own port.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console.api import endpoints, framework
from console.api.openapi import openapi_document
from console.problems import Problem, problem_response
from console.runtime import ConsoleRuntime, build_runtime
from console.web import forms, live, notification_pages, pages
from console.web.auth_pages import AuthPages
from console.web.pages import error_page
from console.web.render import STATIC
from db.engine import Database, make_engine
from medspa.logs import configure_logging
from medspa.secrets import startup_settings
from medspa.settings import Settings

log = logging.getLogger(__name__)


def _api_app(runtime: ConsoleRuntime) -> Starlette:
    endpoints()  # registered before the routes and the document are built
    document = openapi_document(runtime)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    async def api_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        titles = {404: "Not found", 405: "Method not allowed"}
        problem = Problem(status, titles.get(status, "Error"), "", kind="not-found" if status == 404 else None)
        return problem_response(problem, request.url.path)

    return Starlette(
        routes=[Route("/openapi.json", openapi, methods=["GET"]), *framework.routes(runtime)],
        exception_handlers={HTTPException: api_error},
    )


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Starlette:
    # Checked before anything is opened: production without the console's own secrets, or a half OIDC
    # configuration, exits here with one line.
    settings = startup_settings("console", settings)
    configure_logging(settings.log_level, json_output=settings.log_json)
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL must be set for the console (medspa console resolves it)")
    owns_database = database is None
    database = database or Database(
        make_engine(
            settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1),
            pool_size=8,
            application_name="medspa-console",
        )
    )
    runtime = build_runtime(settings, database)
    auth = AuthPages(runtime)
    forms.feature_pages()  # registers the write features' pages before the page routes are built

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        def ping() -> None:
            with database.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            return JSONResponse({"ready": False, "checks": {"postgres": type(exc).__name__}}, status_code=503)
        return JSONResponse({"ready": True, "checks": {"postgres": "ok"}})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error_page(Problem(status, "Not found" if status == 404 else "Error", ""), signed_in=False)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info(
            "console ready", extra={"oidc": runtime.oidc is not None, "dev_secret": settings.console_secret_key is None}
        )
        try:
            yield
        finally:
            runtime.outside.close()
            if owns_database:
                database.dispose()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Mount("/api/v1", app=_api_app(runtime)),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *auth.routes(),
        *live.routes(runtime),
        *notification_pages.routes(runtime),
        *pages.routes(runtime),
        *forms.routes(runtime),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found})
    app.state.console = runtime
    return app
