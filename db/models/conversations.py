"""Conversations: messages, the inbox of inbound events, turns and their tool calls, web chat sessions and
processed provider webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, _clinic_column, _clinic_fk, _created


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
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound (checked since migration 0022)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | tool | staff | system
    body: Mapped[str] = mapped_column(Text, server_default="")
    inbound_seq: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(8))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    turn_id: Mapped[int | None] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        # Partial: only inbound rows have a sequence (migration 0018); NULLs never conflicted, so no uniqueness is
        # lost.  The provider's message id is not unique here: the inbox records each provider event once
        # (``uq_inbox_events_clinic_id_source_provider_event_id``) and an event is attached once, under its row
        # lock (migration 0021).
        Index(
            "uq_messages_inbound_seq",
            "conversation_id",
            "inbound_seq",
            unique=True,
            postgresql_where=text("inbound_seq IS NOT NULL"),
        ),
        Index("ix_messages_conversation_id", "conversation_id", "id"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction_valid"),
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
        # The backlog (events still 'received'): the attach reads a sender's, the sweeper all of a clinic's (0018).
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
    # The model's tool steps in call order: {call_id, name, arguments, result, ok, latency_ms} each (migration 0020:
    # a row of their own cost a turn a heap insert, two index entries and a foreign-key lock on the turn's row).
    tool_calls: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))


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
