"""The one module that reads configuration (environment variables / .env).

Every variable is documented in ``.env.example``.  Secrets are ``SecretStr`` so
they never print.  Nothing else in the code base reads ``os.environ`` for
configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    db_pool_size: int = Field(default=0, description="Connections per process; 0 = derived from worker threads.")

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
    environment: str = "development"  # development | production | test

    # ------------------------------------------------------------ web chat
    chat_token_secret: SecretStr | None = None  # required in production; dev derives one per data dir
    chat_token_ttl_s: int = 24 * 3600
    rate_limit_per_sender_per_min: int = 20
    rate_limit_per_session_per_min: int = 30

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
    max_tool_steps: int = 5
    history_window: int = 20

    # ------------------------------------------------------------ Twilio
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str | None = None  # tests/fakes only
    sms_rate_per_number_per_s: float = 1.0
    sms_provider: str = "auto"  # auto (twilio with credentials, else console) | twilio | console | sink (benchmarks)
    # SMS_PROVIDER=sink only: announce each send on Redis pub/sub (the closed-loop benchmark listens).
    sms_sink_announce: bool = False

    # ------------------------------------------------------------ Stripe
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None  # tests/fakes only
    deposit_hold_minutes: int = 60

    # ------------------------------------------------------------ Google Calendar
    google_application_credentials: Path | None = None
    google_calendar_api_base: str | None = None  # tests/fakes only

    # ------------------------------------------------------------ reliability knobs
    lease_seconds: int = 45
    inbox_sweep_after_s: int = 60
    outbox_sweep_after_s: int = 60
    quarantine_after_attempts: int = 5

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
    return Settings()
