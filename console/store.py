"""Identity, sessions and sign-in attempts: the console's named statements (one parameter dialect, ``:name``).

Every function runs inside a transaction its caller opened (``Database.tenant_scope`` / ``directory_scope``).
Row-level security decides what is visible: ``set_staff_user`` puts the signed-in user in the transaction
(``app.staff_user_id``, transaction-local like ``app.clinic_id``) so they see their own row and memberships.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.staff_access import StaffRole

_SET_STAFF = text("SELECT set_config('app.staff_user_id', :id, true)")
_SIGN_IN = text("SELECT * FROM medspa_staff_sign_in(:email)")
_USER = text(
    """SELECT id, email, display_name, disabled_at, totp_secret IS NOT NULL AS has_totp, password_hash IS NOT NULL
              AS has_password, password_changed_at
       FROM staff_users WHERE id = :id"""
)
_MEMBERSHIPS = text(
    """SELECT m.clinic_id, c.slug, c.name, c.timezone, m.role, m.provider_id
       FROM staff_memberships m JOIN clinics c ON c.id = m.clinic_id
       WHERE m.staff_user_id = :user_id ORDER BY c.name, c.id"""
)
_MEMBERSHIP = text(
    """SELECT m.clinic_id, c.slug, c.name, c.timezone, m.role, m.provider_id
       FROM staff_memberships m JOIN clinics c ON c.id = m.clinic_id
       WHERE m.staff_user_id = :user_id AND m.clinic_id = :clinic_id"""
)
_NEXT_USER_ID = text("SELECT nextval('staff_users_id_seq')")
_INSERT_USER = text(
    """INSERT INTO staff_users (id, email, display_name, password_hash, password_changed_at)
       VALUES (:id, :email, :display_name, CAST(:password_hash AS text),
               CASE WHEN CAST(:password_hash AS text) IS NULL THEN NULL ELSE now() END)"""
)
_UPSERT_MEMBERSHIP = text(
    """INSERT INTO staff_memberships (clinic_id, staff_user_id, role, provider_id)
       VALUES (:clinic_id, :user_id, :role, :provider_id)
       ON CONFLICT (staff_user_id, clinic_id) DO UPDATE SET role = EXCLUDED.role, provider_id = EXCLUDED.provider_id"""
)
_CLINIC_STAFF = text(
    """SELECT u.id, u.email, u.display_name, u.disabled_at, u.last_sign_in_at, u.totp_secret IS NOT NULL AS has_totp,
              m.role, m.provider_id
       FROM staff_memberships m JOIN staff_users u ON u.id = m.staff_user_id
       WHERE m.clinic_id = :clinic_id ORDER BY lower(u.email)"""
)
_SET_PASSWORD = text(
    "UPDATE staff_users SET password_hash = :hash, password_changed_at = now() WHERE id = :id RETURNING id"
)
# The same password under today's hashing parameters: password_changed_at (the credentials version access tokens
# carry) stays.  Only while the stored hash is the one verified, so a reset committed meanwhile is never undone.
_REHASH_PASSWORD = text(
    "UPDATE staff_users SET password_hash = :hash WHERE id = :id AND password_hash = :verified RETURNING id"
)
_SET_DISABLED = text(
    """UPDATE staff_users SET disabled_at = CASE WHEN :disabled THEN coalesce(disabled_at, now()) END
       WHERE id = :id RETURNING id"""
)
_SET_TOTP = text("UPDATE staff_users SET totp_secret = :secret, totp_last_step = NULL WHERE id = :id RETURNING id")
_USE_TOTP_STEP = text(
    """UPDATE staff_users SET totp_last_step = :step
       WHERE id = :id AND (totp_last_step IS NULL OR totp_last_step < :step) RETURNING id"""
)
_SIGNED_IN = text("UPDATE staff_users SET last_sign_in_at = now() WHERE id = :id")

_INSERT_SESSION = text(
    """INSERT INTO staff_sessions (token_hash, staff_user_id, csrf_token, auth_method, second_factor_pending, ip,
                                   user_agent, expires_at)
       VALUES (:token_hash, :user_id, :csrf, :method, :pending, :ip, :user_agent, now() + :ttl) RETURNING id"""
)
_LOAD_SESSION = text(
    """SELECT id, staff_user_id, csrf_token, auth_method, second_factor_pending, last_seen_at, expires_at
       FROM staff_sessions
       WHERE token_hash = :token_hash AND revoked_at IS NULL AND expires_at > now() AND last_seen_at > now() - :idle"""
)
_TOUCH_SESSION = text(
    "UPDATE staff_sessions SET last_seen_at = now() WHERE id = :id AND last_seen_at < now() - interval '30 seconds'"
)
_ROTATE_SESSION = text(
    """UPDATE staff_sessions SET token_hash = :token_hash, csrf_token = :csrf, second_factor_pending = false,
              last_seen_at = now()
       WHERE id = :id AND revoked_at IS NULL"""
)
_REVOKE_SESSION = text("UPDATE staff_sessions SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL")
_REVOKE_USER_SESSIONS = text(
    "UPDATE staff_sessions SET revoked_at = now() WHERE staff_user_id = :id AND revoked_at IS NULL"
)

_RECORD_ATTEMPT = text("INSERT INTO staff_login_attempts (account_key, ip, succeeded) VALUES (:key, :ip, :ok)")
# Failures since the window opened and since the last success (a success clears an account's count).
_ACCOUNT_FAILURES = text(
    """SELECT count(*) AS failures, max(created_at) AS last_failure FROM staff_login_attempts
       WHERE account_key = :key AND NOT succeeded AND created_at > now() - :window
         AND created_at > coalesce((SELECT max(created_at) FROM staff_login_attempts
                                    WHERE account_key = :key AND succeeded), '-infinity')"""
)
_IP_FAILURES = text(
    """SELECT count(*) AS failures, max(created_at) AS last_failure FROM staff_login_attempts
       WHERE ip = :ip AND NOT succeeded AND created_at > now() - :window"""
)
_PRUNE_ATTEMPTS = text("DELETE FROM staff_login_attempts WHERE account_key = :key AND created_at < now() - :keep")
_NOW = text("SELECT now()")


def set_staff_user(session: Session, staff_user_id: int) -> None:
    session.execute(_SET_STAFF, {"id": str(int(staff_user_id))})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ------------------------------------------------------------------ users and memberships
@dataclass(frozen=True)
class SignInRow:
    id: int
    email: str
    display_name: str
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int | None
    disabled_at: datetime | None


@dataclass(frozen=True)
class StaffUser:
    id: int
    email: str
    display_name: str
    disabled_at: datetime | None
    has_totp: bool
    has_password: bool
    password_changed_at: datetime | None  # the credentials version (console.tokens.credentials_version)

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class Membership:
    clinic_id: int
    clinic_slug: str
    clinic_name: str
    timezone: str
    role: StaffRole
    provider_id: int | None


def find_for_sign_in(session: Session, email: str) -> SignInRow | None:
    row = session.execute(_SIGN_IN, {"email": email.strip()}).mappings().one_or_none()
    return SignInRow(**row) if row else None


def get_user(session: Session, staff_user_id: int) -> StaffUser | None:
    """The user's own row (the caller has set them with ``set_staff_user``) or a member of the current clinic."""
    row = session.execute(_USER, {"id": staff_user_id}).mappings().one_or_none()
    return StaffUser(**row) if row else None


def _membership(row: dict[str, object]) -> Membership:
    return Membership(
        clinic_id=int(row["clinic_id"]),  # type: ignore[call-overload]
        clinic_slug=str(row["slug"]),
        clinic_name=str(row["name"]),
        timezone=str(row["timezone"]),
        role=StaffRole(str(row["role"])),
        provider_id=int(row["provider_id"]) if row["provider_id"] is not None else None,  # type: ignore[call-overload]
    )


def memberships_of(session: Session, staff_user_id: int) -> list[Membership]:
    return [_membership(dict(r)) for r in session.execute(_MEMBERSHIPS, {"user_id": staff_user_id}).mappings()]


def membership_in(session: Session, staff_user_id: int, clinic_id: int) -> Membership | None:
    row = session.execute(_MEMBERSHIP, {"user_id": staff_user_id, "clinic_id": clinic_id}).mappings().one_or_none()
    return _membership(dict(row)) if row else None


def create_user(session: Session, *, email: str, display_name: str, password_hash: str | None) -> int:
    """A new staff user (no membership yet: add one in the same transaction, inside the clinic's scope)."""
    user_id = int(session.execute(_NEXT_USER_ID).scalar_one())
    session.execute(
        _INSERT_USER,
        {"id": user_id, "email": email.strip(), "display_name": display_name.strip(), "password_hash": password_hash},
    )
    return user_id


def set_membership(session: Session, *, clinic_id: int, staff_user_id: int, role: StaffRole, provider_id: int | None):
    session.execute(
        _UPSERT_MEMBERSHIP,
        {"clinic_id": clinic_id, "user_id": staff_user_id, "role": role.value, "provider_id": provider_id},
    )


def clinic_staff(session: Session, clinic_id: int) -> list[dict[str, object]]:
    return [dict(r) for r in session.execute(_CLINIC_STAFF, {"clinic_id": clinic_id}).mappings()]


def set_password_hash(session: Session, staff_user_id: int, password_hash: str) -> bool:
    """A new password: the account's credentials version moves on, so every access token minted before it is
    refused (``console.access.authenticate``).  Browser sessions are the caller's to revoke."""
    return session.execute(_SET_PASSWORD, {"id": staff_user_id, "hash": password_hash}).first() is not None


def rehash_password(session: Session, staff_user_id: int, verified_hash: str, password_hash: str) -> bool:
    """Store the password just verified against ``verified_hash`` under today's parameters (not a new password)."""
    params = {"id": staff_user_id, "hash": password_hash, "verified": verified_hash}
    return session.execute(_REHASH_PASSWORD, params).first() is not None


def set_disabled(session: Session, staff_user_id: int, disabled: bool) -> bool:
    found = session.execute(_SET_DISABLED, {"id": staff_user_id, "disabled": disabled}).first() is not None
    if found and disabled:
        session.execute(_REVOKE_USER_SESSIONS, {"id": staff_user_id})
    return found


def set_totp_secret(session: Session, staff_user_id: int, encrypted_secret: str | None) -> bool:
    return session.execute(_SET_TOTP, {"id": staff_user_id, "secret": encrypted_secret}).first() is not None


def use_totp_step(session: Session, staff_user_id: int, step: int) -> bool:
    """Record the time step of an accepted code; False when it (or a later one) was already used (a replay)."""
    return session.execute(_USE_TOTP_STEP, {"id": staff_user_id, "step": step}).first() is not None


def mark_signed_in(session: Session, staff_user_id: int) -> None:
    session.execute(_SIGNED_IN, {"id": staff_user_id})


def revoke_user_sessions(session: Session, staff_user_id: int) -> None:
    session.execute(_REVOKE_USER_SESSIONS, {"id": staff_user_id})


# ------------------------------------------------------------------ browser sessions
@dataclass(frozen=True)
class BrowserSession:
    id: int
    staff_user_id: int
    csrf_token: str
    auth_method: str
    second_factor_pending: bool


@dataclass(frozen=True)
class NewSession:
    id: int
    token: str  # goes into the cookie; only its hash is stored
    csrf_token: str


def create_session(
    session: Session,
    *,
    staff_user_id: int,
    auth_method: str,
    second_factor_pending: bool,
    ip: str,
    user_agent: str,
    ttl: timedelta,
) -> NewSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session_id = session.execute(
        _INSERT_SESSION,
        {
            "token_hash": token_hash(token),
            "user_id": staff_user_id,
            "csrf": csrf,
            "method": auth_method,
            "pending": second_factor_pending,
            "ip": ip[:64],
            "user_agent": user_agent[:300],
            "ttl": ttl,
        },
    ).scalar_one()
    return NewSession(int(session_id), token, csrf)


def load_session(session: Session, token: str, idle: timedelta) -> BrowserSession | None:
    row = session.execute(_LOAD_SESSION, {"token_hash": token_hash(token), "idle": idle}).mappings().one_or_none()
    if row is None:
        return None
    session.execute(_TOUCH_SESSION, {"id": row["id"]})
    return BrowserSession(
        id=int(row["id"]),
        staff_user_id=int(row["staff_user_id"]),
        csrf_token=str(row["csrf_token"]),
        auth_method=str(row["auth_method"]),
        second_factor_pending=bool(row["second_factor_pending"]),
    )


def complete_second_factor(session: Session, session_id: int) -> NewSession:
    """The second factor passed: a new token and CSRF token for the now fully signed-in session (the one that
    was only half signed in cannot be ridden by anyone who saw it)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.execute(_ROTATE_SESSION, {"id": session_id, "token_hash": token_hash(token), "csrf": csrf})
    return NewSession(session_id, token, csrf)


def revoke_session(session: Session, session_id: int) -> None:
    session.execute(_REVOKE_SESSION, {"id": session_id})


# ------------------------------------------------------------------ sign-in throttling
@dataclass(frozen=True)
class Lockout:
    scope: str  # "account" | "address"
    retry_after_s: int


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    ip_max_failures: int
    window: timedelta
    lockout: timedelta


def lockout_for(session: Session, account_key: str, ip: str, policy: ThrottlePolicy) -> Lockout | None:
    """Whether a password sign-in for this account or from this address is locked out now, and for how long.

    Durable (Postgres): a restart or a Redis flush unlocks nobody.  Refused attempts are not recorded, so a
    lockout ends ``lockout`` after the last real failure, whatever an attacker keeps sending."""
    now = session.execute(_NOW).scalar_one()
    checks = (
        ("account", _ACCOUNT_FAILURES, {"key": account_key}, policy.max_failures),
        ("address", _IP_FAILURES, {"ip": ip}, policy.ip_max_failures),
    )
    for scope, statement, params, limit in checks:
        row = session.execute(statement, {**params, "window": policy.window}).mappings().one()
        if int(row["failures"]) >= limit and row["last_failure"] is not None:
            remaining = row["last_failure"] + policy.lockout - now
            if remaining.total_seconds() > 0:
                return Lockout(scope, math.ceil(remaining.total_seconds()))
    return None


def record_attempt(session: Session, account_key: str, ip: str, succeeded: bool, policy: ThrottlePolicy) -> None:
    session.execute(_RECORD_ATTEMPT, {"key": account_key, "ip": ip[:64], "ok": succeeded})
    if succeeded:  # the account's history before the window no longer matters
        session.execute(_PRUNE_ATTEMPTS, {"key": account_key, "keep": policy.window + policy.lockout})
