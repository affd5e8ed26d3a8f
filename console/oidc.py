"""OpenID Connect sign-in (authorization code + PKCE S256) through authlib — any provider by configuration.

authlib does the protocol: discovery, state, nonce, the PKCE verifier and challenge, the code exchange, and the
ID token's validation (signature against the provider's JWKS, issuer, audience, expiry, nonce).  What it keeps
between the redirect and the callback (normally a cookie session) lives here in a short-lived, signed,
HttpOnly cookie bound to this purpose's key, so the console needs no server-side pre-sign-in state.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.requests import Request
from starlette.responses import RedirectResponse

from console.runtime import ConsoleRuntime, OidcConfig

STATE_TTL_S = 600
CALLBACK_PATH = "/auth/oidc/callback"


class OidcFailure(Exception):
    """The provider refused, the state did not match, or the ID token did not validate (message is safe to show)."""


class OidcClient:
    def __init__(self, config: OidcConfig, public_url: str) -> None:
        self.config = config
        self.redirect_uri = public_url + CALLBACK_PATH
        oauth = OAuth()
        self.app: Any = oauth.register(
            name="console",
            client_id=config.client_id,
            client_secret=config.client_secret,
            server_metadata_url=config.metadata_url,
            client_kwargs={"scope": config.scopes, "code_challenge_method": "S256", "timeout": 10},
        )

    async def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = await self.app.load_server_metadata()
        # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
        if str(metadata.get("issuer", "")).rstrip("/") != self.config.issuer.rstrip("/"):
            raise OidcFailure("The identity provider's discovery document names another issuer.")
        if "S256" not in metadata.get("code_challenge_methods_supported", ["S256"]):
            raise OidcFailure("The identity provider does not support PKCE (S256).")
        return metadata

    async def start(self, request: Request) -> tuple[RedirectResponse, dict[str, Any]]:
        """The redirect to the provider's authorization endpoint, and the state to keep until the callback."""
        await self._metadata()
        request.scope["session"] = {}
        response: RedirectResponse = await self.app.authorize_redirect(request, self.redirect_uri)
        return response, dict(request.scope["session"])

    async def finish(self, request: Request, kept: dict[str, Any]) -> dict[str, Any]:
        """The validated ID token's claims."""
        await self._metadata()
        request.scope["session"] = dict(kept)
        try:
            token = await self.app.authorize_access_token(request)
        except OAuthError as exc:
            raise OidcFailure(f"The identity provider refused the sign-in ({exc.error}).") from None
        except Exception as exc:  # noqa: BLE001 - a bad token, an unreachable provider: a clear refusal, logged
            raise OidcFailure(f"The sign-in could not be verified ({type(exc).__name__}).") from None
        claims = token.get("userinfo")
        if not claims:
            raise OidcFailure("The identity provider returned no ID token.")
        return dict(claims)


def seal_state(runtime: ConsoleRuntime, kept: dict[str, Any], next_path: str) -> str:
    payload = {"kept": kept, "next": next_path, "exp": int(time.time()) + STATE_TTL_S}
    return jwt.encode(payload, runtime.keys.oidc_state, algorithm="HS256")


def open_state(runtime: ConsoleRuntime, sealed: str | None) -> tuple[dict[str, Any], str]:
    if not sealed:
        raise OidcFailure("The sign-in took too long or was started in another browser; start again.")
    try:
        payload = jwt.decode(sealed, runtime.keys.oidc_state, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.PyJWTError:
        raise OidcFailure("The sign-in took too long or was started in another browser; start again.") from None
    return dict(payload["kept"]), str(payload.get("next") or "/")
