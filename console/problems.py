"""Errors as RFC 9457 problem details (``application/problem+json``): one shape for every error of the API."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

PROBLEM_TYPE = "urn:medspa:console:problem:"


class Problem(Exception):
    """Raised anywhere in a request; rendered as problem details (the API) or an error page (the console)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.kind if self.kind else "about:blank",
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type="application/problem+json",
        headers={"Cache-Control": "no-store", **problem.headers},
    )


def unauthenticated(detail: str = "Sign in, or send a valid access token (Authorization: Bearer ...).") -> Problem:
    return Problem(401, "Not signed in", detail, kind="unauthenticated", headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail, kind="forbidden")


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"No {what} here.", kind="not-found")
