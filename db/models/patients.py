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

from db.models.base import _OCCUPYING_LIST, _STATUS_LIST, Base, _clinic_fk, _created


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
    # The day of the visit (domain/visits.py, migration 0013): check-in, the outcome (completed / no-show / late
    # cancel) and who recorded it, what was done, and a fee owed under the clinic's policy with its charge.
    checked_in_at: Mapped[datetime | None]
    outcome_at: Mapped[datetime | None]
    outcome_by: Mapped[str] = mapped_column(String(64), server_default="")
    visit_summary: Mapped[str] = mapped_column(Text, server_default="")
    fee_kind: Mapped[str | None] = mapped_column(String(16))  # no_show | late_cancel
    fee_cents: Mapped[int | None] = mapped_column(Integer)
    fee_status: Mapped[str | None] = mapped_column(String(16))  # due | charged | failed | requires_action
    fee_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    fee_error: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    __table_args__ = (
        UniqueConstraint("clinic_id", "source_key"),
        CheckConstraint("starts_at < ends_at AND ends_at <= blocked_until", name="times_ordered"),
        CheckConstraint(
            "amount_charged_cents IS NULL OR amount_charged_cents >= 0", name="amount_charged_non_negative"
        ),
        CheckConstraint(
            f"status IN {_STATUS_LIST}",
            name="status_valid",
        ),
        CheckConstraint(
            "(fee_status IS NULL AND fee_cents IS NULL AND fee_kind IS NULL) OR (fee_status IN "
            "('due','charged','failed','requires_action') AND fee_cents > 0 AND fee_kind IN ('no_show','late_cancel'))",
            name="fee_valid",
        ),
        ExcludeConstraint(
            ("provider_id", "="),
            ("during", "&&"),
            where=text(f"status IN {_OCCUPYING_LIST}"),
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
    # The card the patient saved at deposit time for the clinic's no-show / late-cancel fees (migration 0013):
    # Stripe customer and payment method, when, and the wording they agreed to.
    customer_id: Mapped[str | None] = mapped_column(String(255))
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_saved_at: Mapped[datetime | None]
    card_terms: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


# ------------------------------------------------------------------ waitlist (migration 0013, worker/waitlist)
class WaitlistEntry(Base):
    """A patient waiting for a time: a service, a provider or anyone, day/time windows (``domain.waitlist``)."""

    __tablename__ = "waitlist_entries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="SET NULL"))
    windows: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    date_from: Mapped[date | None] = mapped_column(Date)
    date_to: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default="active")  # active | booked | removed
    conversation_id: Mapped[int | None] = mapped_column(BigInteger)
    appointment_id: Mapped[int | None] = mapped_column(BigInteger)
    removed_reason: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("status IN ('active','booked','removed')", name="status_valid"),
        Index("ix_waitlist_entries_active", "clinic_id", "service_id", "created_at"),
        Index(
            "uq_waitlist_entries_client_service_active",
            "clinic_id",
            "client_id",
            "service_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )


class WaitlistOpening(Base):
    """Time a live appointment or block gave up (recorded by the ``appointments_waitlist_opening`` trigger)."""

    __tablename__ = "waitlist_openings"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    source_appointment_id: Mapped[int | None] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(String(20), server_default="")
    status: Mapped[str] = mapped_column(String(16), server_default="new")  # new | offering | filled | closed
    appointment_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (
        CheckConstraint("status IN ('new','offering','filled','closed')", name="status_valid"),
        Index("ix_waitlist_openings_open", "clinic_id", "status"),
    )


class WaitlistOffer(Base):
    """One text offering one opening to one waitlister, held until ``expires_at``."""

    __tablename__ = "waitlist_offers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    opening_id: Mapped[int] = mapped_column(ForeignKey("waitlist_openings.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(BigInteger)
    service_id: Mapped[int] = mapped_column(BigInteger)
    provider_id: Mapped[int] = mapped_column(BigInteger)
    starts_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), server_default="held")
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    appointment_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("opening_id", "entry_id"),
        CheckConstraint("status IN ('held','lapsed','accepted','taken','declined','skipped')", name="status_valid"),
        Index("ix_waitlist_offers_client", "clinic_id", "client_id"),
    )
