"""Sign-in, second factor, OpenID Connect and sign-out pages.

The two forms shown before a session exists are protected by a double-submit token: a random value in an
HttpOnly, SameSite cookie that the form must echo (plus the Origin check).  Sign-out is protected by the
session's own synchronizer token like every other unsafe request.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import signin, store
from console.access import CSRF_FIELD, check_same_origin
from console.api.framework import request_facts
from console.oidc import OidcClient, OidcFailure, open_state, seal_state
from console.problems import Problem
from console.runtime import ConsoleRuntime
from console.web.pages import error_page
from console.web.render import render

log = logging.getLogger(__name__)
MAX_FORM_BYTES = 8 * 1024


def safe_next(value: str | None) -> str:
    """A local path to go to after sign-in, never another site (``//evil``, ``https://…``, ``/\\evil``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return "/"
    return value


class AuthPages:
    def __init__(self, runtime: ConsoleRuntime) -> None:
        self.runtime = runtime
        self.oidc = OidcClient(runtime.oidc, runtime.public_url) if runtime.oidc else None

    # ------------------------------------------------------------ cookies
    def _set_cookie(self, response: Response, name: str, value: str, max_age: int, samesite: str = "lax") -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.runtime.cookies.secure,
            httponly=True,
            samesite=samesite,  # type: ignore[arg-type]
        )

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.runtime.cookies.secure, httponly=True, samesite="lax")

    def _signin_token(self, request: Request) -> tuple[str, bool]:
        existing = request.cookies.get(self.runtime.cookies.signin)
        if existing and 20 <= len(existing) <= 100:
            return existing, False
        return secrets.token_urlsafe(32), True

    def _sign_in_form(
        self, request: Request, *, error: str = "", status: int = 200, email: str = "", template: str = "sign_in.html"
    ) -> Response:
        token, fresh = self._signin_token(request)
        response = render(
            template,
            {
                "title": "Sign in",
                "error": error,
                "email": email,
                "signin_token": token,
                "next": safe_next(request.query_params.get("next")),
                "oidc_name": self.runtime.oidc.provider_name if self.runtime.oidc else None,
                "signed_in": False,
            },
            status=status,
        )
        if fresh:
            self._set_cookie(response, self.runtime.cookies.signin, token, max_age=3600, samesite="strict")
        return response

    async def _form(self, request: Request) -> dict[str, str]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise Problem(413, "Form too large", "", kind="too-large")
        async with request.form(max_files=0, max_fields=20) as form:
            return {k: v for k, v in form.items() if isinstance(v, str)}

    def _check_signin_csrf(self, request: Request, form: dict[str, str]) -> None:
        facts = request_facts(request, self.runtime)
        check_same_origin(facts, self.runtime)
        cookie = request.cookies.get(self.runtime.cookies.signin) or ""
        sent = form.get(CSRF_FIELD, "")
        if not cookie or not sent or not hmac.compare_digest(cookie, sent):
            raise Problem(403, "CSRF check failed", "Reload the sign-in page and try again.", kind="csrf")

    def _signed_in(self, response: Response, new: store.NewSession) -> Response:
        max_age = int(self.runtime.session_ttl.total_seconds())
        self._set_cookie(response, self.runtime.cookies.session, new.token, max_age=max_age)
        self._clear_cookie(response, self.runtime.cookies.signin)
        return response

    # ------------------------------------------------------------ password
    async def sign_in_page(self, request: Request) -> Response:
        return self._sign_in_form(request)

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await self._form(request)
            self._check_signin_csrf(request, form)
        except Problem as problem:
            return error_page(problem, signed_in=False)
        email, password = form.get("email", "").strip(), form.get("password", "")
        next_path = safe_next(form.get("next"))
        if not email or not password:
            return self._sign_in_form(request, error="Enter your email and password.", status=400, email=email)
        if len(email) > 320 or len(password) > 1024:
            return self._sign_in_form(request, error="That email or password is too long.", status=400)
        facts = request_facts(request, self.runtime)
        result = await run_in_threadpool(
            signin.password_sign_in, self.runtime, email, password, facts.ip, facts.user_agent
        )
        if not result.ok or result.session is None:
            return self._sign_in_form(request, error=result.message, status=result.status, email=email)
        target = f"/sign-in/totp?next={quote(next_path, safe='')}" if result.second_factor_pending else next_path
        return self._signed_in(RedirectResponse(target, status_code=303), result.session)

    # ------------------------------------------------------------ TOTP
    async def totp_page(self, request: Request) -> Response:
        return self._sign_in_form(request, template="totp.html")

    async def totp(self, request: Request) -> Response:
        try:
            form = await self._form(request)
            self._check_signin_csrf(request, form)
        except Problem as problem:
            return error_page(problem, signed_in=False)
        token = request.cookies.get(self.runtime.cookies.session) or ""
        facts = request_facts(request, self.runtime)
        result = await run_in_threadpool(signin.second_factor, self.runtime, token, form.get("code", ""), facts.ip)
        if not result.ok or result.session is None:
            if result.restart:
                response = self._sign_in_form(request, error=result.message, status=result.status)
                self._clear_cookie(response, self.runtime.cookies.session)
                return response
            return self._sign_in_form(request, error=result.message, status=result.status, template="totp.html")
        return self._signed_in(RedirectResponse(safe_next(form.get("next")), status_code=303), result.session)

    # ------------------------------------------------------------ OpenID Connect
    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return error_page(Problem(404, "Not found", "Single sign-on is not configured."), signed_in=False)
        try:
            response, kept = await self.oidc.start(request)
        except (OidcFailure, Exception) as exc:  # noqa: BLE001 - provider unreachable or misconfigured
            log.warning("console OIDC start failed", extra={"error": type(exc).__name__})
            message = str(exc) if isinstance(exc, OidcFailure) else "The identity provider cannot be reached."
            return self._sign_in_form(request, error=message, status=502)
        sealed = seal_state(self.runtime, kept, safe_next(request.query_params.get("next")))
        self._set_cookie(response, self.runtime.cookies.oidc, sealed, max_age=600)
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return error_page(Problem(404, "Not found", "Single sign-on is not configured."), signed_in=False)
        facts = request_facts(request, self.runtime)
        try:
            kept, next_path = open_state(self.runtime, request.cookies.get(self.runtime.cookies.oidc))
            claims = await self.oidc.finish(request, kept)
        except OidcFailure as exc:
            log.info("console OIDC callback refused", extra={"reason": str(exc)[:80]})
            response = self._sign_in_form(request, error=str(exc), status=403)
            self._clear_cookie(response, self.runtime.cookies.oidc)
            return response
        result = await run_in_threadpool(signin.oidc_sign_in, self.runtime, claims, facts.ip, facts.user_agent)
        if not result.ok or result.session is None:
            response = self._sign_in_form(request, error=result.message, status=result.status)
        else:
            target = f"/sign-in/totp?next={quote(next_path, safe='')}" if result.second_factor_pending else next_path
            response = self._signed_in(RedirectResponse(target, status_code=303), result.session)
        self._clear_cookie(response, self.runtime.cookies.oidc)
        return response

    # ------------------------------------------------------------ sign-out
    async def sign_out(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except Problem as problem:
            return error_page(problem)
        facts = request_facts(request, self.runtime, form.get(CSRF_FIELD))
        token = facts.session_token or ""

        def revoke() -> None:
            from console.access import authenticate, check_csrf
            from console.api.framework import request_scope

            with request_scope(self.runtime, None) as session:
                half = store.load_session(session, token, self.runtime.session_idle) if token else None
                if half is not None and half.second_factor_pending:
                    # Half signed in (a TOTP code still owed): authenticate refuses it, so it would outlive the
                    # cookie.  Ended without a CSRF check — a forged sign-out can only end a sign-in nobody finished.
                    store.revoke_session(session, half.id)
                    return
                principal = authenticate(session, self.runtime, facts)
                check_csrf(principal, facts, self.runtime)
                if principal.session is not None:
                    store.revoke_session(session, principal.session.id)

        try:
            await run_in_threadpool(revoke)
        except Problem as problem:
            if problem.status != 401:
                return error_page(problem)
        response = RedirectResponse("/sign-in", status_code=303)
        if token:
            self._clear_cookie(response, self.runtime.cookies.session)
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse(
            "/clinics" if request.cookies.get(self.runtime.cookies.session) else "/sign-in", status_code=303
        )

    def routes(self) -> list[Any]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/sign-in", self.sign_in_page, methods=["GET"]),
            Route("/sign-in", self.sign_in, methods=["POST"]),
            Route("/sign-in/totp", self.totp_page, methods=["GET"]),
            Route("/sign-in/totp", self.totp, methods=["POST"]),
            Route("/sign-out", self.sign_out, methods=["POST"]),
            Route("/auth/oidc/start", self.oidc_start, methods=["GET"]),
            Route("/auth/oidc/callback", self.oidc_callback, methods=["GET"]),
        ]
