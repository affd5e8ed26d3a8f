"""What a running console holds: settings, the database, derived keys, cookie names and policies.  Built once by
``console.app.create_app`` (or ``medspa staff-users`` for the keys it needs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from console.keys import ConsoleKeys
from console.outside import ConsoleOutside
from console.store import ThrottlePolicy
from db.engine import Database
from medspa.secrets import load_console_secrets, oidc_allowed_domains
from medspa.settings import Settings


@dataclass(frozen=True)
class CookieNames:
    session: str
    signin: str  # the pre-session CSRF token of the sign-in forms (double submit)
    oidc: str  # OIDC state, nonce and PKCE verifier between the redirect and the callback
    secure: bool


def cookie_names(public_url: str) -> CookieNames:
    # Over https the __Host- prefix makes the browser refuse the cookie unless Secure, Path=/ and host-only: a
    # sibling subdomain cannot plant or overwrite it.
    secure = urlsplit(public_url).scheme == "https"
    prefix = "__Host-" if secure else ""
    return CookieNames(f"{prefix}medspa_console", f"{prefix}medspa_signin", f"{prefix}medspa_oidc", secure)


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    allowed_domains: tuple[str, ...]
    scopes: str
    provider_name: str

    @property
    def metadata_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class ConsoleRuntime:
    settings: Settings
    database: Database
    keys: ConsoleKeys
    cookies: CookieNames
    throttle: ThrottlePolicy
    session_ttl: timedelta
    session_idle: timedelta
    oidc: OidcConfig | None
    public_url: str
    outside: ConsoleOutside = field(default_factory=lambda: ConsoleOutside(None))  # broker + live events

    @property
    def public_origin(self) -> str:
        split = urlsplit(self.public_url)
        return f"{split.scheme}://{split.netloc}"


def build_runtime(settings: Settings, database: Database) -> ConsoleRuntime:
    """Fails closed: production without its secrets, or a half OIDC configuration, raises ConfigurationError."""
    secrets = load_console_secrets(settings)
    oidc = None
    if settings.console_oidc_issuer and settings.console_oidc_client_id and settings.console_oidc_client_secret:
        oidc = OidcConfig(
            issuer=settings.console_oidc_issuer,
            client_id=settings.console_oidc_client_id,
            client_secret=settings.console_oidc_client_secret.get_secret_value(),
            allowed_domains=oidc_allowed_domains(settings),
            scopes=settings.console_oidc_scopes,
            provider_name=settings.console_oidc_provider_name,
        )
    return ConsoleRuntime(
        settings=settings,
        database=database,
        keys=ConsoleKeys(secrets.secret_key),
        cookies=cookie_names(settings.console_public_url),
        throttle=ThrottlePolicy(
            max_failures=settings.console_login_max_failures,
            ip_max_failures=settings.console_login_ip_max_failures,
            window=timedelta(seconds=settings.console_login_window_s),
            lockout=timedelta(seconds=settings.console_login_lockout_s),
        ),
        session_ttl=timedelta(seconds=settings.console_session_ttl_s),
        session_idle=timedelta(seconds=settings.console_session_idle_s),
        oidc=oidc,
        public_url=settings.console_public_url.rstrip("/"),
        outside=ConsoleOutside(settings.redis_url),
    )
