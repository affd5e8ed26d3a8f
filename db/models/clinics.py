"""The tenant directory (``clinics``, ``clinic_phone_numbers``; read-only to the app role), the scheduler's
bookkeeping, and each clinic's catalogue (providers, services).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_fk, _created


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
