"""The one module that reads configuration (environment variables / .env).

Every variable is documented in ``.env.example``.  Secrets are ``SecretStr`` so
they never print.  Nothing else in the code base reads ``os.environ`` for
configuration.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.appointments import DEFAULT_HOLD_MINUTES

REPO_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    """Where a process runs.  Anything else (``prod``, ``staging``) is a start-up error: a typo must not
    silently run production traffic with development behaviour (generated secrets, ``/demo``, ``/dev/pay``)."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """Invalid configuration; the message is one line naming the variables (never their values)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # ------------------------------------------------------------ infrastructure
    database_url: str | None = Field(
        default=None, description="App-role connection (not owner, not BYPASSRLS). Unset: embedded Postgres."
    )
    migration_database_url: str | None = Field(
        default=None,
        description="Owner connection for migrations and onboarding. Unset: DATABASE_URL's server as owner.",
    )
    redis_url: str | None = Field(default=None, description="Unset: a local redis-server is started.")
    data_dir: Path = Field(default=REPO_ROOT / ".data", description="Where embedded Postgres/Redis keep their files.")
    db_pool_size: int = Field(
        default=0, description="Connections per worker process; 0 = one per worker thread (at most 32) plus 4."
    )

    # ------------------------------------------------------------ service
    public_base_url: str = "http://127.0.0.1:8000"
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8000
    webhook_workers: int = 1
    worker_processes: int = 2
    worker_threads: int = 8
    worker_metrics_port: int = 9191  # Prometheus metrics of all worker processes on this host; 0 disables
    worker_metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True
    environment: Environment = Environment.DEVELOPMENT

    # ------------------------------------------------------------ web chat
    chat_token_secret: SecretStr | None = None  # required in production; dev derives one per data dir
    chat_token_ttl_s: int = 24 * 3600
    rate_limit_per_sender_per_min: int = 20
    rate_limit_per_session_per_min: int = 30
    # Abuse limits on the chat endpoints (429 beyond them; per client IP as uvicorn sees it, and per clinic).
    rate_limit_chat_sessions_per_ip_per_min: int = 20
    rate_limit_chat_sessions_per_clinic_per_min: int = 600
    rate_limit_chat_messages_per_ip_per_min: int = 60
    rate_limit_chat_messages_per_clinic_per_min: int = 1200
    chat_streams_per_ip: int = 4  # concurrent SSE streams per client IP, per webhook process
    chat_streams_per_process: int = 500
    chat_stream_ticket_ttl_s: int = (
        60  # the short-lived ticket that opens a stream (the session token stays out of URLs)
    )

    # ------------------------------------------------------------ webhook ingress
    # A Redis call on the request path (rate limits, typing indicator) is skipped past this (fail open).
    redis_fail_open_timeout_ms: int = 100
    # The webhook app's /metrics is served on this separate listener only, never on the public port; 0 disables.
    webhook_metrics_host: str = "127.0.0.1"
    webhook_metrics_port: int = 9190

    # ------------------------------------------------------------ staff console (medspa console)
    console_host: str = "127.0.0.1"
    console_port: int = 8001
    console_workers: int = 1
    # The URL staff open (OIDC redirect URI, cookie security): https in production (Secure, __Host- cookies).
    console_public_url: str = "http://127.0.0.1:8001"
    # Signs API access tokens and sign-in state, keys the TOTP secret encryption and the sign-in attempt keys.
    console_secret_key: SecretStr | None = None  # required in production; dev derives one per data dir
    console_session_ttl_s: int = 12 * 3600  # a browser session's absolute lifetime
    console_session_idle_s: int = 3600  # ...and how long it survives without a request
    console_access_token_max_ttl_s: int = 3600  # API access tokens for integrations live at most this long
    console_login_max_failures: int = 5  # failed password sign-ins per account within the window → lockout
    console_login_ip_max_failures: int = 20  # failed password sign-ins per IP address within the window → lockout
    console_login_window_s: int = 900
    console_login_lockout_s: int = 900
    # OpenID Connect sign-in (any provider: Google Workspace, Microsoft Entra ID, Okta, Supabase Auth, ...).
    console_oidc_issuer: str | None = None  # discovery at {issuer}/.well-known/openid-configuration
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_allowed_domains: str | None = None  # comma-separated email domains; required with OIDC
    console_oidc_scopes: str = "openid email profile"
    console_oidc_provider_name: str = "your identity provider"  # the sign-in button's label

    # ------------------------------------------------------------ handoff notifications (every handoff, batched)
    handoff_notify_batch_s: int = 120  # handoffs within this window of the first go out as one notification
    handoff_notify_quiet_hours: str = "21:00-07:00"  # staff quiet hours (clinic-local; "" = none); urgent bypasses
    smtp_host: str | None = None  # unset: emails are written to the log (console adapter), ids and subject only
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    notify_email_from: str = "medspa@localhost"

    # ------------------------------------------------------------ LLM
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    model_provider: str = "auto"  # auto (openai with a key, else offline) | openai | offline | bench
    bench_model_latency_ms: int = 0  # MODEL_PROVIDER=bench only: simulated model latency
    local_embeddings: bool = True  # use the local MiniLM model when installed and no OpenAI key
    embeddings_provider: str = "auto"  # auto (openai with a key, else local) | openai | local | none
    openai_embedding_model: str = "text-embedding-3-small"
    model_deadline_s: float = 30.0
    model_retry_backoff_s: float = Field(default=0.5, gt=0)  # the first retry's backoff ceiling (then doubling)
    max_tool_steps: int = 5
    history_window: int = 20

    # ------------------------------------------------------------ Twilio
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str | None = None  # tests/fakes only
    sms_rate_per_number_per_s: float = 1.0
    # One SMS provider call gives up after this long.  Must stay below OUTBOX_SWEEP_AFTER_S: a claimed row is
    # swept (and may be re-claimed by another worker) only after that deadline, so a call started on a fresh
    # claim ends before anyone else can take the row (see worker/outbox/rows.py, Claim).
    sms_send_timeout_s: float = 10.0
    sms_provider: str = "auto"  # auto (twilio with credentials, else console) | twilio | console | sink (benchmarks)
    # SMS_PROVIDER=sink only: announce each send on Redis pub/sub (the closed-loop benchmark listens).
    sms_sink_announce: bool = False

    # ------------------------------------------------------------ photos patients text (MMS; worker/media.py)
    media_storage: str = "local"  # local (a folder) | s3 (S3-compatible object storage)
    media_storage_dir: Path | None = None  # MEDIA_STORAGE=local: where photos are kept; unset = DATA_DIR/media
    media_max_bytes: int = 10 * 1024 * 1024  # a larger photo is recorded as failed, never stored
    media_fetch_timeout_s: float = 20.0
    media_s3_bucket: str | None = None  # MEDIA_STORAGE=s3
    media_s3_endpoint_url: str | None = None  # e.g. https://s3.us-west-2.amazonaws.com or a MinIO URL
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: SecretStr | None = None
    media_s3_prefix: str = "media/"

    # ------------------------------------------------------------ Stripe
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None  # tests/fakes only
    deposit_hold_minutes: int = DEFAULT_HOLD_MINUTES

    # ------------------------------------------------------------ Google Calendar
    google_application_credentials: Path | None = None
    google_calendar_api_base: str | None = None  # tests/fakes only

    # ------------------------------------------------------------ reliability knobs
    lease_seconds: int = 45
    inbox_sweep_after_s: int = 60
    outbox_sweep_after_s: int = 60
    sweep_every_s: int = Field(default=10, ge=1)  # the scheduler enqueues the recovery sweep this often
    quarantine_after_attempts: int = 5

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """``OPENAI_API_KEY=`` (a copied example file) means "not configured", not ``SecretStr('')``: an
        empty secret would otherwise switch an integration on, or key a signature check anyone can compute.
        Applies to every optional setting (default ``None``)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and field.default is None and isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def production(self) -> bool:
        return self.environment == Environment.PRODUCTION

    @property
    def media_dir(self) -> Path:
        """Where MEDIA_STORAGE=local keeps photos."""
        return self.media_storage_dir or (self.data_dir / "media")

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def stripe_enabled(self) -> bool:
        return self.stripe_api_key is not None

    @property
    def google_enabled(self) -> bool:
        return self.google_application_credentials is not None

    @property
    def openai_enabled(self) -> bool:
        return self.openai_api_key is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line: each invalid variable and what is wrong with it (pydantic's input values are left out, so a
    secret never reaches a terminal or a log)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        name = "_".join(str(part) for part in error["loc"]).upper() or "configuration"
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)
