"""Outbound messages: the outbox, automations, campaigns and their recipients."""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_column, _clinic_fk, _created


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
    # Not indexed (migration 0023): status callbacks name their row by id, reconciling asks the provider.
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
        Index(
            "ix_outbox_conversation_unsent",
            "conversation_id",
            "id",
            postgresql_where=text("status IN ('queued','sending','unknown')"),
        ),
    )


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
