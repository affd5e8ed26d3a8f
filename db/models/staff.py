"""The staff console: identity, memberships, sessions, login attempts and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_fk, _created

# ------------------------------------------------------------------ staff console (identity, access, audit)
STAFF_ROLES = ("owner", "manager", "front_desk", "provider")


class StaffUser(Base):
    """A person who signs in to the staff console; belongs to clinics through ``staff_memberships``.

    Identity precedes tenancy (sign-in happens before a clinic is chosen), so this is not a per-clinic table.
    Row-level security still applies to the app role: a row is visible to the user it describes
    (``app.staff_user_id``) and within a clinic that user belongs to (``app.clinic_id``) — never to another
    clinic.  Sign-in finds a row by email through ``medspa_staff_sign_in`` (migration 0009)."""

    __tablename__ = "staff_users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), server_default="")
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id; NULL = sign-in through OIDC only
    totp_secret: Mapped[str | None] = mapped_column(Text)  # encrypted with a key derived from CONSOLE_SECRET_KEY
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)  # a TOTP code is accepted once
    disabled_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    __table_args__ = (Index("uq_staff_users_email_lower", func.lower(text("email")), unique=True),)


class StaffMembership(Base):
    """A staff user's role in one clinic (a provider is linked to their ``providers`` row)."""

    __tablename__ = "staff_memberships"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("staff_user_id", "clinic_id"),
        CheckConstraint("role IN ('owner','manager','front_desk','provider')", name="role_valid"),
        CheckConstraint("(role = 'provider') = (provider_id IS NOT NULL)", name="provider_link"),
    )


class StaffSession(Base):
    """A signed-in browser.  The cookie holds a random token; only its SHA-256 is stored (a database reader
    cannot ride a session).  Revocable: ``revoked_at``, disabling the user, or expiry."""

    __tablename__ = "staff_sessions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(16))  # password | oidc
    second_factor_pending: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    ip: Mapped[str] = mapped_column(String(64), server_default="")
    user_agent: Mapped[str] = mapped_column(String(300), server_default="")
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class StaffLoginAttempt(Base):
    """Password sign-in attempts, for the per-account and per-IP lockout (durable: a restart or a Redis flush
    does not unlock anyone).  ``account_key`` is an HMAC of the lower-cased email, not the email."""

    __tablename__ = "staff_login_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_key: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        Index("ix_staff_login_attempts_account", "account_key", "created_at"),
        Index("ix_staff_login_attempts_ip", "ip", "created_at"),
    )


class StaffAuditEvent(Base):
    """What staff did, append-only (the app role may insert and read, never update or delete)."""

    __tablename__ = "staff_audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320), server_default="")  # email at the time (or "cli:...")
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32), server_default="")
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    client_id: Mapped[int | None] = mapped_column(BigInteger)  # which patient (kept when the client is deleted)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    ip: Mapped[str] = mapped_column(String(64), server_default="")
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        Index("ix_staff_audit_log_clinic_id", "clinic_id", "id"),
        Index("ix_staff_audit_log_client", "clinic_id", "client_id"),
    )
