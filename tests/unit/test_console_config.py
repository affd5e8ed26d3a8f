"""The staff console fails closed on configuration (its own key in production, https, a complete and valid OIDC
configuration in every environment), and the pure pieces of its security: role rules, tokens, TOTP, passwords,
cookie names, safe redirects."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyotp
import pytest

from console.keys import ConsoleKeys
from console.passwords import hash_password, password_problem, verify_password
from console.runtime import cookie_names
from console.tokens import (
    AUDIENCE,
    ISSUER,
    InvalidAccessToken,
    credentials_version,
    mint_access_token,
    verify_access_token,
)
from console.totp import decrypt_secret, encrypt_secret, matching_step
from console.web.auth_pages import safe_next
from domain.staff_access import Permission, StaffRole, effective_permissions, parse_scopes, permissions_of
from medspa.secrets import check_startup, console_oidc_problems, console_production_problems, load_console_secrets
from medspa.settings import ConfigurationError, Settings
from tests.support.production_config import GOOD

CONSOLE_GOOD = {"console_secret_key": secrets.token_hex(32), "console_public_url": "https://console.example.com"}
OIDC_GOOD = {
    "console_oidc_issuer": "https://accounts.example.com",
    "console_oidc_client_id": "medspa-console",
    "console_oidc_client_secret": secrets.token_urlsafe(32),
    "console_oidc_allowed_domains": "glow.example, @harbor.example",
}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def production(**overrides: Any) -> Settings:
    return settings(**(GOOD | CONSOLE_GOOD | overrides))


def test_a_complete_production_console_configuration_passes():
    assert console_production_problems(production()) == []
    check_startup(production(), "console")
    check_startup(production(**OIDC_GOOD), "console")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"console_secret_key": None}, "CONSOLE_SECRET_KEY is unset"),
        ({"console_secret_key": ""}, "CONSOLE_SECRET_KEY is unset"),
        ({"console_secret_key": "CHANGE_ME-openssl-rand-hex-32"}, "CONSOLE_SECRET_KEY is a placeholder"),
        ({"console_secret_key": secrets.token_hex(16)}, "CONSOLE_SECRET_KEY is too short"),
        ({"console_secret_key": GOOD["chat_token_secret"]}, "must differ from CHAT_TOKEN_SECRET"),
        ({"console_public_url": "http://console.example.com"}, "CONSOLE_PUBLIC_URL must be https"),
    ],
)
def test_production_refuses_the_console_without_its_own_strong_key_or_https(overrides, fragment):
    with pytest.raises(ConfigurationError) as refused:
        check_startup(production(**overrides), "console")
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
    key = overrides.get("console_secret_key")
    if key:
        assert key not in str(refused.value), "a secret value is never printed"
    check_startup(production(**overrides), "webhooks")  # the other processes do not need the console's key


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"console_oidc_client_secret": None}, "CONSOLE_OIDC_CLIENT_SECRET is unset"),
        ({"console_oidc_allowed_domains": None}, "CONSOLE_OIDC_ALLOWED_DOMAINS is unset"),
        ({"console_oidc_allowed_domains": "*"}, "must list email domains"),
        ({"console_oidc_issuer": "accounts.example.com"}, "not an issuer URL"),
        ({"console_oidc_issuer": "https://idp.example.com/?tenant=1"}, "not an issuer URL"),
        ({"console_oidc_client_secret": "your-client-secret"}, "CONSOLE_OIDC_CLIENT_SECRET is a placeholder"),
        ({"console_oidc_scopes": "email profile"}, "must include openid"),
    ],
)
def test_a_half_or_invalid_oidc_configuration_is_refused_in_every_environment(overrides, fragment):
    for environment in ("development", "production"):
        base = production() if environment == "production" else settings(environment="development")
        configured = base.model_copy(update={**OIDC_GOOD, **overrides})
        with pytest.raises(ConfigurationError) as refused:
            check_startup(configured, "console")
        assert fragment in str(refused.value), environment


def test_oidc_issuer_must_be_https_in_production_only():
    local = settings(environment="development", **(OIDC_GOOD | {"console_oidc_issuer": "http://127.0.0.1:9000"}))
    assert console_oidc_problems(local) == []
    assert any("https" in p for p in console_oidc_problems(production(**local.model_dump(include=set(OIDC_GOOD)))))


def test_development_generates_and_keeps_a_local_console_key(tmp_path):
    dev = settings(environment="development", data_dir=tmp_path)
    first, second = load_console_secrets(dev), load_console_secrets(dev)
    assert first.is_dev and first.secret_key == second.secret_key and len(first.secret_key) == 64
    with pytest.raises(ConfigurationError):
        load_console_secrets(production(console_secret_key=None))


# ------------------------------------------------------------------ roles and scopes
def test_only_owners_manage_staff_settings_campaigns_and_read_the_audit_log():
    for permission in (
        Permission.STAFF_MANAGE,
        Permission.SETTINGS_MANAGE,
        Permission.CAMPAIGNS_MANAGE,
        Permission.AUDIT_READ,
        Permission.TOKENS_MINT,
    ):
        holders = {role for role in StaffRole if permission in permissions_of(role)}
        assert holders == {StaffRole.OWNER}, permission
    assert Permission.CAMPAIGNS_READ in permissions_of(StaffRole.MANAGER)
    assert Permission.CAMPAIGNS_READ not in permissions_of(StaffRole.FRONT_DESK)


def test_token_scopes_never_exceed_the_role_now_or_later():
    granted, refused = parse_scopes(["clients:read", "audit:read", "tokens:mint", "nonsense"], StaffRole.FRONT_DESK)
    assert granted == {Permission.CLIENTS_READ} and refused == ["audit:read", "tokens:mint", "nonsense"]
    owner_scopes, _ = parse_scopes(["audit:read", "tokens:mint"], StaffRole.OWNER)
    assert owner_scopes == {Permission.AUDIT_READ}, "a token can never mint tokens"
    # minted for an owner, used after a demotion: the role's limit applies at use
    assert effective_permissions(StaffRole.FRONT_DESK, ["audit:read", "clients:read"]) == {Permission.CLIENTS_READ}
    assert effective_permissions(StaffRole.FRONT_DESK, None) == permissions_of(StaffRole.FRONT_DESK)


# ------------------------------------------------------------------ tokens, TOTP, passwords
def test_access_tokens_verify_and_refuse_other_keys_algorithms_and_expiry():
    keys = ConsoleKeys(secrets.token_hex(32))
    changed = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    token, claims = mint_access_token(
        keys, staff_user_id=7, clinic_id=1, scopes=frozenset({"clients:read"}), ttl_s=300, password_changed_at=changed
    )
    verified = verify_access_token(keys, token)
    assert (verified.staff_user_id, verified.clinic_id, verified.scopes) == (7, 1, frozenset({"clients:read"}))
    assert verified.credentials_version == claims.credentials_version == credentials_version(changed)
    with pytest.raises(InvalidAccessToken):
        verify_access_token(ConsoleKeys(secrets.token_hex(32)), token)
    old, _ = mint_access_token(
        keys,
        staff_user_id=7,
        clinic_id=1,
        scopes=frozenset(),
        ttl_s=60,
        password_changed_at=None,
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    with pytest.raises(InvalidAccessToken):
        verify_access_token(keys, old)
    import jwt

    unsigned = jwt.encode({"sub": "7", "clinic": 1}, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidAccessToken):
        verify_access_token(keys, unsigned)
    assert keys.access_token != keys.oidc_state, "one key per purpose"


def test_an_access_token_carries_its_credentials_version_to_the_microsecond():
    import jwt

    keys = ConsoleKeys(secrets.token_hex(32))
    changed = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    assert credentials_version(changed) != credentials_version(changed + timedelta(microseconds=1))
    assert credentials_version(changed) == credentials_version(changed.astimezone(timezone(timedelta(hours=-8))))
    assert credentials_version(None) is None
    sso, _ = mint_access_token(
        keys, staff_user_id=7, clinic_id=1, scopes=frozenset(), ttl_s=300, password_changed_at=None
    )
    assert verify_access_token(keys, sso).credentials_version is None
    now = datetime.now(UTC)
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "7", "clinic": 1, "iat": now, "exp": now + timedelta(minutes=5)}
    for claims in ({"jti": "x"}, {"jti": "x", "pwv": "1772357415123456"}, {"jti": "x", "pwv": 1.5}):
        # a token without the claim (minted before it existed) or with another type is refused, not read as None
        signed = jwt.encode(base | claims, keys.access_token, algorithm="HS256")
        with pytest.raises(InvalidAccessToken):
            verify_access_token(keys, signed)


def test_totp_codes_are_accepted_once_within_a_step_of_drift():
    keys = ConsoleKeys(secrets.token_hex(32))
    secret = pyotp.random_base32()
    stored = encrypt_secret(keys, secret)
    assert secret not in stored and decrypt_secret(keys, stored) == secret
    now = time.time()
    code = pyotp.TOTP(secret).at(now)
    step = matching_step(secret, code, last_step=None, now=now)
    assert step is not None
    assert matching_step(secret, code, last_step=step, now=now) is None, "a used code is refused"
    assert matching_step(secret, pyotp.TOTP(secret).at(now - 30), last_step=None, now=now) is not None
    assert matching_step(secret, pyotp.TOTP(secret).at(now - 120), last_step=None, now=now) is None
    assert matching_step(secret, "12345", last_step=None, now=now) is None


def test_passwords_are_argon2id_and_verified_in_constant_shape():
    stored = hash_password("a long enough passphrase")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "a long enough passphrase")
    assert not verify_password(stored, "a long enough passphrasE")
    assert not verify_password(None, "anything at all"), "a missing account fails (after a dummy check)"
    assert password_problem("short") and password_problem("a" * 20) and password_problem("twelve chars ok") is None


def test_cookies_use_the_host_prefix_and_secure_over_https_and_next_stays_local():
    assert cookie_names("https://console.example.com").session == "__Host-medspa_console"
    assert cookie_names("https://console.example.com").secure
    assert not cookie_names("http://127.0.0.1:8001").secure
    for bad in ("//evil.example", "https://evil.example", "/\\evil.example", "evil", "", None):
        assert safe_next(bad) == "/"
    assert safe_next("/clinics/1/inbox?x=1") == "/clinics/1/inbox?x=1"
