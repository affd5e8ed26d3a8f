"""Patients: clients, the consent ledger, appointments and their payments."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSTZRANGE, ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_fk, _created


# ------------------------------------------------------------------ patients
class Client(Base):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Transactional consent (conversation replies, reminders) and the STOP block: unknown|opted_in|opted_out.
    consent_state: Mapped[str] = mapped_column(String(16), server_default="unknown")
    # Marketing consent, a separate fact (an explicit grant in the ledger): none|granted|revoked.  While
    # consent_state is opted_out it is suspended, not erased (START restores what STOP revoked, never more).
    marketing_consent: Mapped[str] = mapped_column(String(16), server_default="none")
    sms_status: Mapped[str] = mapped_column(String(16), server_default="ok")  # ok|invalid|not_mobile
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    notes: Mapped[str] = mapped_column(Text, server_default="")
    birth_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("clinic_id", "phone_e164"),
        CheckConstraint("consent_state IN ('unknown','opted_in','opted_out')", name="consent_state_valid"),
        CheckConstraint("marketing_consent IN ('none','granted','revoked')", name="marketing_consent_valid"),
    )


class ConsentEvent(Base):
    """The consent ledger: append-only record of every opt-in/opt-out/help/request, its scope and its wording
    (rules: ``domain.compliance.ConsentRecord``; the one writer: ``db.consent.record_consent``)."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(16))  # opt_in | opt_out | help | request
    scope: Mapped[str] = mapped_column(String(16), server_default="transactional")  # all | transactional | marketing
    source: Mapped[str] = mapped_column(String(32))  # sms_keyword | web_form | staff | carrier | seed
    wording: Mapped[str] = mapped_column(Text, server_default="")
    # When and where the patient gave it, when that was before it was recorded here (an import's provenance).
    given_at: Mapped[datetime | None]
    given_via: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint("kind IN ('opt_in','opt_out','help','request')", name="kind_valid"),
        CheckConstraint("scope IN ('all','transactional','marketing')", name="scope_valid"),
    )


class Appointment(Base):
    __tablename__ = "appointments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    kind: Mapped[str] = mapped_column(String(16), server_default="appointment")  # appointment | block
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(BigInteger)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    blocked_until: Mapped[datetime]  # ends_at + the service's buffer: what the provider is busy for
    during: Mapped[Any] = mapped_column(
        TSTZRANGE, Computed("tstzrange(starts_at, blocked_until, '[)')", persisted=True)
    )
    status: Mapped[str] = mapped_column(String(20), server_default="booked")
    source_key: Mapped[str | None] = mapped_column(String(200))  # idempotency of the intent that created it
    deposit_cents: Mapped[int] = mapped_column(Integer, server_default="0")
    hold_expires_at: Mapped[datetime | None]
    calendar_event_id: Mapped[str | None] = mapped_column(String(1024))
    calendar_sync: Mapped[str] = mapped_column(String(16), server_default="pending")  # pending|synced|failed|none
    patient_confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str] = mapped_column(Text, server_default="")
    notes: Mapped[str] = mapped_column(Text, server_default="")
    # What the visit cost the patient (NULL: not recorded; spend segments then count the service's list price).
    amount_charged_cents: Mapped[int | None] = mapped_column(Integer)
    # Set when the visit came from an import (``medspa appointments import-visits``): history, not a live visit,
    # so the automations that follow a visit (aftercare, review request, no-show follow-up) never fire for it.
    imported_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    __table_args__ = (
        UniqueConstraint("clinic_id", "source_key"),
        CheckConstraint("starts_at < ends_at AND ends_at <= blocked_until", name="times_ordered"),
        CheckConstraint(
            "amount_charged_cents IS NULL OR amount_charged_cents >= 0", name="amount_charged_non_negative"
        ),
        CheckConstraint(
            "status IN ('pending_deposit','booked','confirmed','completed','cancelled','no_show','expired')",
            name="status_valid",
        ),
        ExcludeConstraint(
            ("provider_id", "="),
            ("during", "&&"),
            where=text("status IN ('pending_deposit','booked','confirmed')"),
            using="gist",
            name="appointments_no_overlap",
        ),
        Index("ix_appointments_clinic_starts", "clinic_id", "starts_at"),
    )


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(16))  # stripe | local
    checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), server_default="usd")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    # pending | paid | expired | kept | refund_due | refunded | refund_failed
    url: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    refund_id: Mapped[str | None] = mapped_column(String(255))
    refunded_cents: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
