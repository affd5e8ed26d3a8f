"""Typed rows of the appointment service, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.screening import Contraindication


class AppointmentError(Exception):
    """A refusal the caller shows as it is: a tool result ``{"error": message, **extra}`` the model reads, or
    a staff command's one-line error."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


@dataclass(frozen=True)
class ServiceRow:
    id: int
    slug: str
    name: str
    category: str
    description: str
    duration_min: int
    buffer_min: int
    price_cents: int
    price_note: str
    deposit_cents: int
    prep_instructions: str
    synonyms: tuple[str, ...]
    contraindications: tuple[Contraindication, ...] = ()


@dataclass(frozen=True)
class ProviderRow:
    id: int
    slug: str
    name: str
    title: str
    calendar_id: str | None
    working_hours: dict[str, Any]
    service_ids: frozenset[int]


@dataclass(frozen=True)
class AppointmentRow:
    """An appointment (or a block) with what its callers show: the service, provider and patient."""

    id: int
    kind: str
    status: str
    starts_at: datetime
    ends_at: datetime
    blocked_until: datetime
    provider_id: int
    service_id: int | None
    client_id: int | None
    deposit_cents: int
    hold_expires_at: datetime | None
    service_name: str | None
    provider_slug: str
    provider_name: str
    client_name: str | None = None
    phone_e164: str | None = None
    consent_state: str | None = None
    sms_status: str | None = None
    conversation_id: int | None = None  # the patient's SMS conversation

    @property
    def what(self) -> str:
        return self.service_name or "Appointment"


@dataclass(frozen=True)
class PaidDeposit:
    """A deposit that was paid (or must be refunded: ``refund_due``) and is not settled yet."""

    id: int
    status: str
    amount_cents: int
    payment_intent_id: str | None


@dataclass(frozen=True)
class ClientRow:
    id: int
    name: str | None
    phone_e164: str | None
    consent_state: str
    sms_status: str
    conversation_id: int | None  # their SMS conversation, when they have one
