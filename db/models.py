"""Tables (SQLAlchemy 2 typed models).

Every clinic-owned table carries ``clinic_id`` and is protected by row-level
security (see ``db/rls.py`` and the initial migration).  ``clinics`` and
``clinic_phone_numbers`` are the tenant directory (read-only to the app role) so
that a webhook can find the clinic before it knows it; ``scheduler_runs`` is
global bookkeeping for the scheduler.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZRANGE, TSVECTOR, ExcludeConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.appointments import ALL_STATUSES, OCCUPYING_STATUSES

EMBEDDING_DIMENSIONS = 384

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Appointment statuses (``domain/appointments.py``): the check constraint names them all; the exclusion
# constraint covers the ones that occupy the provider.  A new status also needs an Alembic revision for the constraint.
_STATUS_LIST = "(" + ",".join(f"'{s}'" for s in ALL_STATUSES) + ")"
_OCCUPYING_LIST = "(" + ",".join(f"'{s}'" for s in OCCUPYING_STATUSES) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
    }


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def _clinic_fk(*, index: bool = True) -> Mapped[int]:
    return mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=index)


def _clinic_column() -> Mapped[int]:
    """``clinic_id`` of a high-volume append table (messages, turns, outbox, ...): pinned to the transaction's
    clinic by the row-level-security WITH CHECK, but neither a foreign key nor indexed on its own.

    A foreign key makes every insert lock the clinic's one row FOR KEY SHARE, and concurrent lockers of a row
    share a MultiXact that Postgres rewrites per locker: a hotspot every writer of a clinic queues on.  An
    index on clinic_id alone selects nothing (a clinic's queries always narrow further), costs a write per
    insert, and — the RLS predicate being indexable — lures the planner away from the right index whenever
    statistics are stale.  See migration 0002."""
    return mapped_column(BigInteger)


# ------------------------------------------------------------------ tenant directory
class Clinic(Base):
    __tablename__ = "clinics"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)  # web widget key, not a secret
    phone: Mapped[str] = mapped_column(String(20))  # front-desk number given to patients
    oncall_phone: Mapped[str | None] = mapped_column(String(20))  # staff urgent handoff notifications
    address: Mapped[str] = mapped_column(Text, server_default="")
    business_hours: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    holidays: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    policies: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    chat_origins: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _created()


class ClinicPhoneNumber(Base):
    __tablename__ = "clinic_phone_numbers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    e164: Mapped[str] = mapped_column(String(20), unique=True)
    messaging_service_sid: Mapped[str | None] = mapped_column(String(64))


class SchedulerRun(Base):
    """One row per (job, time slot): the unique key is what makes two scheduler replicas run a slot once."""

    __tablename__ = "scheduler_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_name: Mapped[str] = mapped_column(String(100))
    slot_start: Mapped[datetime]
    runner: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("job_name", "slot_start"),)


# ------------------------------------------------------------------ clinic catalogue
class Provider(Base):
    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(100), server_default="")
    calendar_id: Mapped[str | None] = mapped_column(String(255))
    working_hours: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),)


class Service(Base):
    __tablename__ = "services"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, server_default="")
    duration_min: Mapped[int] = mapped_column(Integer)
    buffer_min: Mapped[int] = mapped_column(Integer, server_default="0")
    price_cents: Mapped[int] = mapped_column(Integer)
    price_note: Mapped[str] = mapped_column(String(100), server_default="")  # e.g. "per unit", "per syringe"
    deposit_cents: Mapped[int] = mapped_column(Integer, server_default="0")
    prep_instructions: Mapped[str] = mapped_column(Text, server_default="")
    rebook_interval_days: Mapped[int | None] = mapped_column(Integer)
    synonyms: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    # The clinic's screening rules (domain.screening.Contraindication as JSON): [{"condition", "position", ...}]
    contraindications: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    __table_args__ = (
        UniqueConstraint("clinic_id", "slug"),
        CheckConstraint("duration_min > 0", name="duration_positive"),
        CheckConstraint("price_cents >= 0 AND deposit_cents >= 0", name="money_non_negative"),
    )


class ProviderService(Base):
    __tablename__ = "provider_services"
    clinic_id: Mapped[int] = _clinic_fk()
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)


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


# ------------------------------------------------------------------ conversations
class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk(index=False)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # sms | chat
    agent_state: Mapped[str] = mapped_column(String(32), server_default="idle")  # domain.agent_state.AgentState
    slots: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")  # fencing token, bumped per lease
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    last_inbound_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    answered_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    failed_turns: Mapped[int] = mapped_column(Integer, server_default="0")
    handoff_reason: Mapped[str] = mapped_column(Text, server_default="")
    handoff_urgency: Mapped[str | None] = mapped_column(String(16))  # low|normal|urgent|emergency
    last_message_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("clinic_id", "client_id", "channel"),
        Index("ix_conversations_pending", "clinic_id", postgresql_where=text("last_inbound_seq > answered_seq")),
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound | internal
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | tool | staff | system
    body: Mapped[str] = mapped_column(Text, server_default="")
    inbound_seq: Mapped[int | None] = mapped_column(BigInteger)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSONB)
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(8))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    turn_id: Mapped[int | None] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("clinic_id", "channel", "provider_message_id"),
        UniqueConstraint("conversation_id", "inbound_seq"),
        Index("ix_messages_conversation_id", "conversation_id", "id"),
    )


class InboxEvent(Base):
    """Durable record of an acknowledged inbound event, written before the 2xx."""

    __tablename__ = "inbox_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    source: Mapped[str] = mapped_column(String(16))  # sms | chat | stripe
    provider_event_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    # Who sent it (phone for SMS, chat session for web chat): events of one sender attach in id (= arrival) order.
    sender_key: Mapped[str] = mapped_column(String(100), server_default="")
    conversation_id: Mapped[int | None] = mapped_column(BigInteger)
    trace_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="received")  # received|processed|quarantined
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # deliveries started (crash counter)
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    swept_at: Mapped[datetime | None]  # last re-enqueue by the sweeper (at most once per sweep deadline)
    processed_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("clinic_id", "source", "provider_event_id"),
        Index("ix_inbox_events_unprocessed", "clinic_id", "received_at", postgresql_where=text("status = 'received'")),
        Index("ix_inbox_events_sender", "clinic_id", "sender_key", "id", postgresql_where=text("status = 'received'")),
    )


class Turn(Base):
    __tablename__ = "turns"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    state_before: Mapped[str] = mapped_column(String(32))
    state_after: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(100), server_default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    steps: Mapped[int] = mapped_column(Integer, server_default="0")
    outcome: Mapped[str] = mapped_column(String(16))  # replied | handoff | failed | compliance | silent
    model_latency_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    latency_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    trace_id: Mapped[str] = mapped_column(String(32), server_default="")
    worker: Mapped[str] = mapped_column(String(100), server_default="")
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ToolCallRecord(Base):
    __tablename__ = "tool_calls"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any]]
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created()


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # sms | chat
    kind: Mapped[str] = mapped_column(String(16))  # reply|safety|compliance|automation|campaign|staff|notification
    priority: Mapped[int] = mapped_column(Integer, server_default="0")  # 0 = conversation reply (first)
    to_address: Mapped[str] = mapped_column(String(64))
    from_address: Mapped[str] = mapped_column(String(64), server_default="")
    body: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    claimed_at: Mapped[datetime | None]  # the current claim's start or last renewal (the sweeper's deadline)
    claim_token: Mapped[int | None] = mapped_column(BigInteger)  # who holds the claim (fresh per claim)
    swept_at: Mapped[datetime | None]  # last re-enqueue by the sweeper
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str] = mapped_column(Text, server_default="")
    segments: Mapped[int] = mapped_column(Integer, server_default="1")
    encoding: Mapped[str] = mapped_column(String(8), server_default="GSM-7")
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    trace_id: Mapped[str] = mapped_column(String(32), server_default="")
    created_at: Mapped[datetime] = _created()
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("clinic_id", "dedupe_key"),
        CheckConstraint(
            "status IN ('queued','sending','sent','delivered','failed','undelivered','suppressed','cancelled','unknown')",
            name="status_valid",
        ),
        Index(
            "ix_outbox_pending", "clinic_id", "priority", "id", postgresql_where=text("status IN ('queued','sending')")
        ),
        Index("ix_outbox_provider_message_id", "provider_message_id"),
        Index(
            "ix_outbox_conversation_unsent",
            "conversation_id",
            "id",
            postgresql_where=text("status IN ('queued','sending','unknown')"),
        ),
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


class ProcessedWebhookEvent(Base):
    __tablename__ = "processed_webhook_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    __table_args__ = (UniqueConstraint("provider", "event_id"),)


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    token_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(255), server_default="")
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]  # set by staff/ops (medspa chat-sessions revoke): the token stops working
    revoked_reason: Mapped[str] = mapped_column(Text, server_default="")


# ------------------------------------------------------------------ knowledge base
class KbDocument(Base):
    __tablename__ = "kb_documents"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    slug: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(255), server_default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),)


class KbChunk(Base):
    __tablename__ = "kb_chunks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS), nullable=True)
    # Which embedder produced ``embedding``: vectors of different models are not comparable, so search only
    # uses the current model's and re-indexing replaces the others.
    embedding_model: Mapped[str | None] = mapped_column(String(100))
    tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || to_tsvector('english', content)",
            persisted=True,
        ),
    )
    __table_args__ = (
        UniqueConstraint("document_id", "chunk_index"),
        Index(
            "ix_kb_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        # Leads with clinic_id (btree_gin, migration 0011): a clinic's matches without other clinics' rows.
        Index("ix_kb_chunks_tsv", "clinic_id", "tsv", postgresql_using="gin"),
    )


class KbLexemeCount(Base):
    """How many of a clinic's chunks contain each word (stemmed lexeme), kept by triggers on ``kb_chunks``
    (migration 0011).  Knowledge search leaves out of its any-word ranking the words too common to tell chunks
    apart — what inverse document frequency does in other engines — so its work stays bounded at any size."""

    __tablename__ = "kb_lexeme_counts"
    # No foreign key: rows follow the chunks' triggers, also while a clinic's deletion cascades.
    clinic_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    chunks: Mapped[int] = mapped_column(Integer)


# ------------------------------------------------------------------ automations and campaigns
class Automation(Base):
    __tablename__ = "automations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    template: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    __table_args__ = (UniqueConstraint("clinic_id", "kind"),)


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_fk()
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(Text)
    segment: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    scheduled_at: Mapped[datetime | None]
    rate_cap_per_s: Mapped[float | None]
    created_by: Mapped[str] = mapped_column(String(100), server_default="")
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft','scheduled','sending','paused','completed','cancelled')", name="status_valid"
        ),
    )


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    exclusion_reason: Mapped[str | None] = mapped_column(String(32))
    send_after: Mapped[datetime | None]
    outbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("campaign_id", "client_id"),
        Index("ix_campaign_recipients_campaign_status", "campaign_id", "status"),
    )


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


class MessageMedia(Base):
    """A photo (or other media) a patient texted: recorded when its message is attached, fetched from the provider
    and stored by a worker (``worker/media.py``); ``storage_key`` names it in the media store."""

    __tablename__ = "message_media"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    inbox_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(Integer)  # MediaUrl{position} of the inbound message
    provider_url: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100), server_default="")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")  # pending | stored | failed
    storage_key: Mapped[str | None] = mapped_column(String(300))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created()
    stored_at: Mapped[datetime | None]
    swept_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("clinic_id", "inbox_id", "position"),
        CheckConstraint("status IN ('pending','stored','failed')", name="status_valid"),
        Index("ix_message_media_message", "message_id"),
        Index("ix_message_media_conversation", "conversation_id", "id"),
        Index("ix_message_media_pending", "clinic_id", "created_at", postgresql_where=text("status = 'pending'")),
    )


class MissedCall(Base):
    """A call to the clinic's number nobody answered, and what was done about it (the text-back or why none)."""

    __tablename__ = "missed_calls"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    clinic_id: Mapped[int] = _clinic_column()
    call_sid: Mapped[str] = mapped_column(String(64))
    inbox_id: Mapped[int] = mapped_column(BigInteger)
    from_e164: Mapped[str] = mapped_column(String(64))
    to_e164: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # not_forwarded | no-answer | busy | failed | canceled
    status: Mapped[str] = mapped_column(String(16))  # texted | skipped
    skip_reason: Mapped[str] = mapped_column(String(32), server_default="")
    client_id: Mapped[int | None] = mapped_column(BigInteger)
    conversation_id: Mapped[int | None] = mapped_column(BigInteger)
    outbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("clinic_id", "call_sid"),
        Index("ix_missed_calls_caller", "clinic_id", "from_e164", "created_at"),
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


# Tables without clinic-scoped RLS (see module docstring).
# staff_users, staff_sessions, staff_login_attempts: identity precedes tenancy (see StaffUser and migration 0009).
GLOBAL_TABLES = frozenset(
    {"clinics", "clinic_phone_numbers", "scheduler_runs", "staff_users", "staff_sessions", "staff_login_attempts"}
)
TENANT_TABLES = tuple(sorted(name for name in Base.metadata.tables if name not in GLOBAL_TABLES))
