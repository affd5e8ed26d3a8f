"""A local OpenID Connect provider for tests: discovery, JWKS, authorize, token — real RS256 ID tokens.

A small Starlette app on 127.0.0.1 (uvicorn in a thread).  ``authorize`` signs in whoever the test set as
``next_user`` (no login form: the browser is redirected straight back with a code, as a provider does for a
user who is already signed in there).  ``token`` checks what a real provider checks — client authentication,
the code, the redirect URI and the PKCE verifier against the S256 challenge — and records every violation in
``violations`` so a test can assert the console spoke the protocol correctly.  Knobs let a test make the
provider misbehave (sign with a key not in its JWKS, report another issuer, drop email_verified, echo a wrong
nonce).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from medspa.devstack import free_port
from tests.support.infra import wait_for


@dataclass
class OidcUser:
    email: str
    email_verified: bool = True
    sub: str = field(default_factory=lambda: secrets.token_hex(8))
    name: str = "Test Staff"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    user: OidcUser


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


class FakeOidcProvider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "use": "sig", "alg": "RS256"})
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "alg": "RS256"})
        self.next_user: OidcUser | None = None
        self.violations: list[str] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        # misbehaviour knobs
        self.sign_with_rogue_key = False
        self.id_token_issuer: str | None = None
        self.wrong_nonce = False
        self._grants: dict[str, _Grant] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ endpoints
    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        for name in ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge"):
            if not params.get(name):
                self.violations.append(f"authorize without {name}")
        if params.get("code_challenge_method") != "S256":
            self.violations.append("authorize without code_challenge_method=S256")
        if "openid" not in params.get("scope", "").split():
            self.violations.append("authorize without the openid scope")
        if params.get("client_id") != self.client_id:
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        redirect = params.get("redirect_uri", "")
        if self.next_user is None:
            return RedirectResponse(
                f"{redirect}?{urlencode({'error': 'access_denied', 'state': params.get('state', '')})}"
            )
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            self.client_id, redirect, params.get("code_challenge", ""), params.get("nonce"), self.next_user
        )
        return RedirectResponse(f"{redirect}?{urlencode({'code': code, 'state': params.get('state', '')})}")

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            from urllib.parse import unquote

            return unquote(client_id) == self.client_id and unquote(secret) == self.client_secret
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    async def token(self, request: Request) -> Response:
        async with request.form() as raw:
            form = {k: str(v) for k, v in raw.items()}
        self.token_requests.append(form)
        if not self._client_authenticated(request, form):
            self.violations.append("token request without valid client authentication")
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self._grants.pop(form.get("code", ""), None)  # a code works once
        if form.get("grant_type") != "authorization_code" or grant is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant.redirect_uri:
            self.violations.append("token redirect_uri differs from authorize")
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not verifier or challenge != grant.code_challenge:
            self.violations.append("PKCE verifier does not match the challenge")
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.id_token_issuer or self.issuer,
            "sub": grant.user.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "email": grant.user.email,
            "email_verified": grant.user.email_verified,
            "name": grant.user.name,
        }
        if grant.nonce is not None:
            claims["nonce"] = "not-the-nonce" if self.wrong_nonce else grant.nonce
        key = self.rogue_key if self.sign_with_rogue_key else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "fake-1"}, claims, key)
        return JSONResponse(
            {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeOidcProvider:
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-oidc", daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, 20, what="the fake OIDC provider")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
