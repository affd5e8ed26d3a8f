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
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_column, _clinic_fk, _created

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


# ------------------------------------------------------------------ handoff notifications (migration 0013)
class HandoffAlert(Base):
    """One handoff staff must hear about, written in the commit that handed the conversation off; ``batch_id``
    says which notification carried it (NULL: not notified yet)."""

    __tablename__ = "handoff_alerts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    conversation_id: Mapped[int] = mapped_column(BigInteger)
    urgency: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = _created()
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("clinic_id", "dedupe_key"),
        Index("ix_handoff_alerts_pending", "clinic_id", "id", postgresql_where=text("batch_id IS NULL")),
    )


class HandoffNotification(Base):
    """One notification to the on-call staff (texts through the outbox, an email) carrying one or more alerts."""

    __tablename__ = "handoff_notifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    alerts: Mapped[int] = mapped_column(Integer)
    urgent: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(Text)
    outbox_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default=text("'{}'::bigint[]"))
    email_to: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    email_status: Mapped[str] = mapped_column(String(16), server_default="none")  # none | pending | sent
    emailed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        Index("ix_handoff_notifications_clinic", "clinic_id", "id"),
        CheckConstraint("email_status IN ('none','pending','sent')", name="email_status_valid"),
    )


class HandoffNotifySettings(Base):
    """A clinic's handoff notification settings: the on-call staff numbers and addresses, staff quiet hours
    (HH:MM in the clinic's zone), the batching window.  No row: the defaults from the environment."""

    __tablename__ = "handoff_notify_settings"
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True)
    sms_numbers: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    emails: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    batch_window_s: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _created()
