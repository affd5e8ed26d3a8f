"""Webhook and token secrets, and the production start-up check.

Fail closed: checks are never skipped.  In production every process (``medspa webhooks|worker|scheduler``,
``uvicorn --factory webhooks.app:create_app``, ``dramatiq worker.actors``, ``python -m worker.scheduler``)
calls ``startup_settings`` before it listens or consumes: a secret that guards a door (a webhook signature,
a chat token) or a credential production needs (Twilio: without it replies would go to the console sender,
which prints message bodies) must be present, non-empty, not a placeholder and strong enough; otherwise the
process prints one line naming the variable and what is wrong (never the value) and exits non-zero.

The staff console (``medspa console``) is checked for more: its own ``CONSOLE_SECRET_KEY`` and an https
``CONSOLE_PUBLIC_URL`` in production, and — in every environment — an OpenID Connect configuration that is
complete and valid or absent (``console_oidc_problems``).

In development and test (no accounts, no keys) a random local secret is generated once and kept in the
git-ignored data folder, so the chat simulator can sign Twilio-format webhooks exactly as Twilio would.
Production never generates one.  A webhook secret that is set is used as is, so in every environment one that
is an example value (``changeme``, ``your-…``, ``xxx``) is refused at start-up rather than keying a door
(``door_placeholder_problems``).
"""

from __future__ import annotations

import math
import re
import secrets
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from pydantic import SecretStr

from medspa.settings import ConfigurationError, Settings, get_settings

# uvicorn's own "failed before serving" status: with ``--workers N`` its supervisor stops instead of restarting
# a child that exits with it (any other status is restarted in a loop).  Non-zero for every caller.
EXIT_CONFIGURATION = 3

CHAT_SECRET_MIN_BITS = 256  # 32 random bytes: HMAC-SHA256's key strength
# Stripe's signing secrets hold at least 128 random bits after whsec_ (32 letters and digits, or 64 hex from the
# Stripe CLI): fewer means a value someone typed, not one Stripe issued.
STRIPE_SECRET_MIN_BITS = 128
TWILIO_AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")  # exactly: Twilio issues no other shape (128 bits)
STRIPE_WEBHOOK_SECRET_PREFIX = "whsec_"
STRIPE_WEBHOOK_SECRET_MIN_LENGTH = 32  # "whsec_" + at least 26 characters
_GENERATE = "e.g. `openssl rand -hex 32`"  # what to do about a weak secret we let operators choose

# Key prefixes stripped before the "your-…" and "one repeated character" tests (``whsec_your-…``, ``AC0000…``).
_KEY_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_", "sk-proj-", "sk-", "ac")
# Words that only appear in a value nobody filled in (compared with separators removed, case-insensitively).
_PLACEHOLDER_WORDS = ("changeme", "replaceme", "fillmein", "placeholder", "notset", "setme")
_TEMPLATE = re.compile(r"<[^>]*>|\$\{[^}]*\}|\{\{.*\}\}|\.\.\.")
_X_RUN = re.compile(r"(?:^|[-_.:/ ])x{3,}(?:[-_.:/ ]|$)")  # "xxx", "sk_test_xxx", "your-key-xxxx"

# Words a person types where a vendor's random characters belong (``whsec_example_…``, ``whsec_TODO_…``).  Where
# a word may count decides how often a real secret is refused, so: a word of six letters or more counts anywhere
# (each turns up in 32 random letters and digits, case-insensitively, with probability about 27 x 31^-6, 3e-8);
# a shorter one only beside a character that is not a letter or digit (``test_``, ``-todo``), which Stripe's
# random part never has.  Anywhere, "test" alone would refuse about one real secret in 30,000 (29 x 31^-4).
# ``changeme`` and friends are placeholder_reason's, checked on the whole value first.
_LONG_TYPED_WORDS = ("example", "sample", "replace", "placeholder", "secret", "signing", "webhook", "stripe", "insert")
_SHORT_TYPED_WORDS = ("test", "todo", "tbd", "your", "fake", "demo", "dummy", "mock", "key", "here")
_TYPED_WORD = re.compile(
    "|".join(_LONG_TYPED_WORDS)
    + "|[^a-z0-9](?:{words})|(?:{words})[^a-z0-9]".format(words="|".join(_SHORT_TYPED_WORDS))
)
# A run of this many characters, equal or each one step up or down 0-9a-z (``aaaaaaaa``, ``6789abcd``,
# ``76543210``), is typed, not drawn: 32 random hex characters hold one with probability about 25 x 3 x 16^-7,
# 3e-7; a shorter run would start refusing real Twilio tokens.
_RUN_ALPHABET = string.digits + string.ascii_lowercase
_RUN_LENGTH = 8


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` looks like an example value nobody replaced, or None.

    Recognises what example files and tutorials ship: ``change-me…``/``CHANGE_ME``, ``your-…``, ``<…>``,
    ``${…}``, ``xxx``, and a value made of one repeated character after its key prefix (``AC000…``).  The
    values of deploy/compose.env.example and .env.example are all recognised (a unit test holds that)."""
    text = value.strip()
    lowered = text.lower()
    body = lowered
    for prefix in _KEY_PREFIXES:
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    squashed = re.sub(r"[^a-z0-9]", "", lowered)
    if any(word in squashed for word in _PLACEHOLDER_WORDS):
        return "is a placeholder (change-me…)"
    if lowered.startswith(("your-", "your_", "your ")) or body.startswith(("your-", "your_", "your ")):
        return "is a placeholder (your-…)"  # also after a key prefix: whsec_your-key-here
    if _TEMPLATE.search(text):
        return "is a placeholder (a template such as <…> or ${…} not filled in)"
    if _X_RUN.search(lowered):
        return "is a placeholder (xxx)"
    if len(set(body)) <= 1:
        return "is a placeholder (one repeated character)"
    return None


def estimated_entropy_bits(value: str) -> float:
    """Upper bound of a random value's entropy: length x log2(the smallest usual alphabet it fits in).

    A hex string gets 4 bits a character, base64/base64url 6, other printable text ~6.55.  ``openssl rand
    -hex 32`` (64 characters) and ``secrets.token_urlsafe(32)`` (43) both reach 256 bits."""
    if not value:
        return 0.0
    chars = set(value)
    if chars <= set(string.digits):
        alphabet = 10
    elif chars <= set(string.hexdigits):
        alphabet = 16
    elif chars <= set(string.ascii_lowercase + string.digits) or chars <= set(string.ascii_uppercase + string.digits):
        alphabet = 36
    elif chars <= set(string.ascii_letters + string.digits + "+/=-_"):
        alphabet = 64
    else:
        alphabet = 94
    return len(value) * math.log2(alphabet)


def _longest_run(value: str) -> int:
    """The most characters in a row of ``value`` that are equal, or each one step up (or each one step down)
    0-9a-z, case-insensitively; any other character ends a run."""
    positions = [_RUN_ALPHABET.find(c) for c in value.lower()]
    longest = run = min(len(value), 1)
    step: int | None = None
    for before, after in zip(positions, positions[1:], strict=False):
        delta = after - before if before >= 0 and after >= 0 else None
        run = (run + 1 if delta == step else 2) if delta in (-1, 0, 1) else 1
        step = delta
        longest = max(longest, run)
    return longest


def weak_secret_reason(value: str, *, min_bits: int = CHAT_SECRET_MIN_BITS, remedy: str | None = None) -> str | None:
    """Why ``value`` cannot hold ``min_bits`` of entropy, or None.  Length alone is not enough: a repeated
    pattern (``abcabc…``), a run (``01234567``) or a handful of distinct characters is long but guessable.
    ``remedy`` says where a good value comes from (default: generate one)."""
    # Ten distinct characters, or a quarter of the length when shorter: 32 random hex characters (a Twilio
    # token) have fewer than 8 with probability 4e-8, but fewer than 10 with probability 1e-4.
    distinct = len(set(value))
    if distinct < min(10, len(value) // 4):
        return f"is not random enough: {distinct} distinct characters ({remedy or _GENERATE})"
    if value in (value + value)[1:-1]:  # a whole number of repetitions of a shorter string
        return f"is not random enough: a repeated pattern ({remedy or _GENERATE})"
    if _longest_run(value) >= _RUN_LENGTH:
        return (
            f"is not random enough: {_RUN_LENGTH} or more characters in a row that repeat or count up or down "
            f"({remedy or _GENERATE})"
        )
    # Last: a pattern (above) is the better reason, whatever the length.
    bits = estimated_entropy_bits(value)
    if bits < min_bits:
        return (
            f"is too short: at most {bits:.0f} bits of entropy, {min_bits} needed "
            f"({remedy or f'{min_bits // 8} random bytes, e.g. `openssl rand -hex {min_bits // 8}`'})"
        )
    return None


def twilio_auth_token_reason(value: str) -> str | None:
    """Why ``value`` is not an auth token Twilio issued, or None (placeholder_reason is checked before)."""
    remedy = "copy the auth token from the Twilio Console"
    if not TWILIO_AUTH_TOKEN.fullmatch(value):
        return f"is not a Twilio auth token (exactly 32 hexadecimal characters; {remedy})"
    # The shape fixes the strength: an estimate from the characters seen would take the rare all-digit token
    # (one in three million) for 106 bits and refuse it.
    return weak_secret_reason(value, min_bits=0, remedy=remedy)


def stripe_webhook_secret_reason(value: str) -> str | None:
    """Why ``value`` is not a signing secret Stripe issued, or None (placeholder_reason is checked before):
    ``whsec_`` and then random characters, with no typed word, pattern or run among them."""
    remedy = "after whsec_; copy the endpoint's signing secret from the Stripe Dashboard"
    if not value.startswith(STRIPE_WEBHOOK_SECRET_PREFIX):
        return "is not a Stripe signing secret (whsec_…)"
    if len(value) < STRIPE_WEBHOOK_SECRET_MIN_LENGTH:
        return f"is too short ({len(value)} characters, at least {STRIPE_WEBHOOK_SECRET_MIN_LENGTH})"
    random_part = value[len(STRIPE_WEBHOOK_SECRET_PREFIX) :]
    if _TYPED_WORD.search(random_part.lower()):
        return f"is a placeholder (a word such as example, test or secret {remedy})"
    return weak_secret_reason(random_part, min_bits=STRIPE_SECRET_MIN_BITS, remedy=remedy)


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def production_problems(settings: Settings) -> list[str]:
    """Everything that stops ``settings`` from running production safely, one short phrase each, naming the
    variable and never its value.  Empty variables arrive here as unset (see ``Settings``)."""
    problems: list[str] = []

    def secret(name: str, value: object, *, extra: Callable[[str], str | None] | None = None, why: str = "") -> None:
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value  # SecretStr or str
        if raw is None:
            problems.append(f"{name} is unset or empty{why}")
            return
        reason = placeholder_reason(str(raw)) or (extra(str(raw)) if extra else None)
        if reason:
            problems.append(f"{name} {reason}")

    # Doors: each of these keys a check an attacker would otherwise pass.
    secret(
        "TWILIO_AUTH_TOKEN",
        settings.twilio_auth_token,
        why=" (it verifies every inbound SMS signature)",
        extra=twilio_auth_token_reason,
    )
    secret(
        "STRIPE_WEBHOOK_SECRET",
        settings.stripe_webhook_secret,
        why=" (it verifies Stripe's payment events)",
        extra=stripe_webhook_secret_reason,
    )
    secret(
        "CHAT_TOKEN_SECRET",
        settings.chat_token_secret,
        why=" (it signs web-chat session tokens; `openssl rand -hex 32`)",
        extra=weak_secret_reason,
    )
    # Production sends through Twilio: without credentials the console sender would print message bodies.
    secret(
        "TWILIO_ACCOUNT_SID",
        settings.twilio_account_sid,
        why=" (production sends SMS through Twilio, never the console sender)",
        extra=lambda v: None if re.fullmatch(r"AC[0-9a-fA-F]{32}", v) else "is not a Twilio account SID (AC + 32 hex)",
    )
    if settings.sms_provider in ("console", "sink"):
        problems.append(f"SMS_PROVIDER={settings.sms_provider} is for development and benchmarks only")
    if settings.model_provider == "bench":
        problems.append("MODEL_PROVIDER=bench is for benchmarks only")
    # Optional credentials: unset is fine (offline policy, local payments), an example value is not.
    for name, value in (("OPENAI_API_KEY", settings.openai_api_key), ("STRIPE_API_KEY", settings.stripe_api_key)):
        if value is not None and (reason := placeholder_reason(value.get_secret_value())):
            problems.append(f"{name} {reason}")
    if settings.google_application_credentials is not None and not settings.google_application_credentials.is_file():
        problems.append("GOOGLE_APPLICATION_CREDENTIALS does not name a readable file")
    # Infrastructure: no embedded servers in production, and no example password in a connection URL.
    for name, url, required in (
        ("DATABASE_URL", settings.database_url, True),
        ("REDIS_URL", settings.redis_url, True),
        ("MIGRATION_DATABASE_URL", settings.migration_database_url, False),
    ):
        if url is None:
            if required:
                problems.append(f"{name} is unset or empty (production runs no embedded server)")
            continue
        password = _url_password(url)
        if password is not None and (reason := placeholder_reason(password)):
            problems.append(f"{name}'s password {reason}")
    return problems


def oidc_allowed_domains(settings: Settings) -> tuple[str, ...]:
    """CONSOLE_OIDC_ALLOWED_DOMAINS as lower-cased domains (``example.com, @clinic.example`` → two domains)."""
    raw = settings.console_oidc_allowed_domains or ""
    return tuple(d.strip().lower().lstrip("@") for d in raw.split(",") if d.strip())


def console_oidc_problems(settings: Settings) -> list[str]:
    """OpenID Connect sign-in is configured completely or not at all, in every environment: half a
    configuration would otherwise show a sign-in button that fails, or accept any email domain."""
    parts = {
        "CONSOLE_OIDC_ISSUER": settings.console_oidc_issuer,
        "CONSOLE_OIDC_CLIENT_ID": settings.console_oidc_client_id,
        "CONSOLE_OIDC_CLIENT_SECRET": settings.console_oidc_client_secret,
        "CONSOLE_OIDC_ALLOWED_DOMAINS": settings.console_oidc_allowed_domains,
    }
    if all(value is None for value in parts.values()):
        return []
    problems = [
        f"{name} is unset or empty (OIDC sign-in needs all of {', '.join(parts)})"
        for name, value in parts.items()
        if value is None
    ]
    issuer = settings.console_oidc_issuer
    if issuer is not None:
        split = urlsplit(issuer)
        if split.scheme not in ("https", "http") or not split.netloc or split.query or split.fragment:
            problems.append("CONSOLE_OIDC_ISSUER is not an issuer URL (https://host[/path])")
        elif split.scheme != "https" and settings.production:
            problems.append("CONSOLE_OIDC_ISSUER must use https in production")
    if settings.console_oidc_allowed_domains is not None:
        domains = oidc_allowed_domains(settings)
        bad = [d for d in domains if "." not in d or "@" in d or " " in d or "*" in d]
        if not domains or bad:
            problems.append("CONSOLE_OIDC_ALLOWED_DOMAINS must list email domains (example-clinic.com,...)")
    for name in ("CONSOLE_OIDC_CLIENT_ID", "CONSOLE_OIDC_CLIENT_SECRET"):
        value = parts[name]
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is not None and (reason := placeholder_reason(str(raw))):
            problems.append(f"{name} {reason}")
    if "openid" not in settings.console_oidc_scopes.split():
        problems.append("CONSOLE_OIDC_SCOPES must include openid")
    return problems


def console_production_problems(settings: Settings) -> list[str]:
    """What the staff console needs on top of ``production_problems``: its own signing key and https."""
    problems: list[str] = []
    key = settings.console_secret_key
    if key is None:
        problems.append(
            "CONSOLE_SECRET_KEY is unset or empty (it signs staff API tokens and sign-in state; `openssl rand -hex 32`)"
        )
    elif reason := (placeholder_reason(key.get_secret_value()) or weak_secret_reason(key.get_secret_value())):
        problems.append(f"CONSOLE_SECRET_KEY {reason}")
    elif (
        settings.chat_token_secret is not None
        and key.get_secret_value() == settings.chat_token_secret.get_secret_value()
    ):
        problems.append("CONSOLE_SECRET_KEY must differ from CHAT_TOKEN_SECRET")
    if urlsplit(settings.console_public_url).scheme != "https":
        problems.append("CONSOLE_PUBLIC_URL must be https in production (session cookies are Secure)")
    return problems


def media_storage_problem(settings: Settings) -> str | None:
    """Photo storage fails closed in every environment: an unknown MEDIA_STORAGE, or S3 without its settings."""
    backend = settings.media_storage.strip().lower()
    if backend == "local":
        return None
    if backend != "s3":
        return f"MEDIA_STORAGE must be local or s3, not {settings.media_storage!r}"
    secret = settings.media_s3_secret_access_key
    missing = [
        name
        for name, value in (
            ("MEDIA_S3_BUCKET", settings.media_s3_bucket),
            ("MEDIA_S3_ENDPOINT_URL", settings.media_s3_endpoint_url),
            ("MEDIA_S3_ACCESS_KEY_ID", settings.media_s3_access_key_id),
            ("MEDIA_S3_SECRET_ACCESS_KEY", secret.get_secret_value() if secret else None),
        )
        if not value
    ]
    return f"MEDIA_STORAGE=s3 needs {', '.join(missing)}" if missing else None


def door_placeholder_problems(settings: Settings) -> list[str]:
    """The webhook secrets set to an example value, one short phrase each, naming the variable and never its
    value.  Outside production an unset one is generated (``load_webhook_secrets``) but a set one keys its door
    as is, so ``TWILIO_AUTH_TOKEN=changeme`` copied into .env would let anyone who read it sign webhooks."""
    doors = (
        ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        ("STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret),
        ("CHAT_TOKEN_SECRET", settings.chat_token_secret),
    )
    return [
        f"{name} {reason}"
        for name, value in doors
        if value is not None and (reason := placeholder_reason(value.get_secret_value()))
    ]


def check_startup(settings: Settings, process: str | None = None) -> None:
    """Raise ``ConfigurationError`` (one line) when production is not configured to fail closed, when a
    webhook secret is set to an example value (every environment), or (for the staff console, in every
    environment) when its OIDC configuration is incomplete or invalid."""
    if process == "console" and (problems := console_oidc_problems(settings)):
        raise ConfigurationError("console OIDC configuration: " + "; ".join(problems))
    if media := media_storage_problem(settings):
        raise ConfigurationError(media)
    if not settings.production:
        # Production reports these among production_problems, with everything else it needs.
        if problems := door_placeholder_problems(settings):
            raise ConfigurationError(
                f"ENVIRONMENT={settings.environment.value} but "
                + "; ".join(problems)
                + " (set the real value, or leave it unset for a generated local secret)"
            )
        return
    problems = production_problems(settings)
    if process == "console":
        problems += console_production_problems(settings)
    if problems:
        raise ConfigurationError("ENVIRONMENT=production but " + "; ".join(problems))


def _refusal_stream() -> TextIO:
    """Where the one refusal line goes: stderr — the process's own in a Dramatiq worker process, which swaps
    ``sys.stderr`` for a pipe to its parent's log thread, and that thread may stop before draining the pipe when the
    worker exits at once (the line would be lost under load)."""
    from dramatiq.compat import StreamablePipe  # late: keeps this module import-light for the web app

    if isinstance(sys.stderr, StreamablePipe) and sys.__stderr__ is not None:
        return sys.__stderr__
    return sys.stderr


def startup_settings(process: str, settings: Settings | None = None) -> Settings:
    """The settings a process starts with, checked; on any problem print one line and exit non-zero.

    Every entry point calls this first, before it opens a socket, a pool or a queue consumer."""
    try:
        settings = settings or get_settings()
        check_startup(settings, process)
    except ConfigurationError as exc:
        print(f"medspa {process}: refusing to start: {exc}", file=_refusal_stream(), flush=True)
        raise SystemExit(EXIT_CONFIGURATION) from None
    return settings


@dataclass(frozen=True)
class WebhookSecrets:
    twilio_auth_token: str
    stripe_webhook_secret: str
    chat_token_secret: str
    twilio_is_dev: bool
    stripe_is_dev: bool


def _dev_secret(data_dir: Path, name: str) -> str:
    path = data_dir / "dev-secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    path.write_text(value)
    path.chmod(0o600)
    return value


def load_webhook_secrets(settings: Settings) -> WebhookSecrets:
    """The secrets the webhook doors are keyed with.  Production: the configured ones, checked (never a
    generated one).  Development/test: the configured one (refused by ``check_startup`` when an example
    value), else a generated local secret."""
    check_startup(settings)

    def pick(value: object, name: str) -> tuple[str, bool]:
        if value is not None:
            return value.get_secret_value(), False  # type: ignore[attr-defined]
        if settings.production:  # unreachable after check_startup; never generate a production secret
            raise ConfigurationError(f"{name.upper()} is unset or empty")
        return _dev_secret(settings.data_dir, name), True

    twilio, twilio_dev = pick(settings.twilio_auth_token, "twilio_auth_token")
    stripe, stripe_dev = pick(settings.stripe_webhook_secret, "stripe_webhook_secret")
    chat, _ = pick(settings.chat_token_secret, "chat_token_secret")
    return WebhookSecrets(twilio, stripe, chat, twilio_dev, stripe_dev)


@dataclass(frozen=True)
class ConsoleSecrets:
    secret_key: str  # CONSOLE_SECRET_KEY: the root of the console's derived keys (console/keys.py)
    is_dev: bool


def load_console_secrets(settings: Settings) -> ConsoleSecrets:
    """The staff console's key.  Production: the configured one, checked (never generated).  Development/test:
    the configured one, else a generated local key in DATA_DIR (so ``medspa staff-users`` and the console agree)."""
    check_startup(settings, "console")
    if settings.console_secret_key is not None:
        return ConsoleSecrets(settings.console_secret_key.get_secret_value(), False)
    if settings.production:  # unreachable after check_startup
        raise ConfigurationError("CONSOLE_SECRET_KEY is unset or empty")
    return ConsoleSecrets(_dev_secret(settings.data_dir, "console_secret_key"), True)
