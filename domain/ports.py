"""Ports: the small Protocols through which domain code reaches the outside world.

Each port has one real adapter (in ``worker/integrations``) and one test fake.
Domain code receives ports as arguments and never constructs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


# ---------------------------------------------------------------- clock
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


# ---------------------------------------------------------------- SMS
@dataclass(frozen=True)
class OutboundSms:
    outbox_id: int
    clinic_id: int
    to: str  # E.164
    from_: str  # E.164 sending number of the clinic
    body: str
    status_callback_url: str | None = None
    messaging_service_sid: str | None = None


@dataclass(frozen=True)
class SmsSendResult:
    provider_message_id: str
    status: str  # queued | sent | ...
    segments: int = 1


class SmsSendError(Exception):
    """A send failed.  ``retryable`` tells the caller whether to try again."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class SmsSender(Protocol):
    def send(self, message: OutboundSms) -> SmsSendResult: ...

    def find_sent(self, message: OutboundSms, since: datetime) -> str | None:
        """Reconciliation: the provider id of ``message`` if the provider already
        has it (a send whose outcome we never recorded), else None."""
        ...


# ---------------------------------------------------------------- email (staff notifications)
@dataclass(frozen=True)
class OutboundEmail:
    to: tuple[str, ...]
    subject: str
    body: str


class EmailSender(Protocol):
    def send(self, email: OutboundEmail) -> None:
        """Deliver or raise (any exception: the caller retries later)."""
        ...


# ---------------------------------------------------------------- payments
@dataclass(frozen=True)
class DepositRequest:
    clinic_id: int
    appointment_id: int
    amount_cents: int
    currency: str
    description: str
    expires_at: datetime
    idempotency_key: str
    success_url: str
    cancel_url: str
    metadata: dict[str, str] = field(default_factory=dict)
    # Non-empty: the clinic charges no-show / late-cancel fees to a saved card; the patient is shown this wording
    # and the card is saved for off-session use (domain.visits.VisitPolicy.card_terms).
    save_card_terms: str = ""


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str
    amount_cents: int


@dataclass(frozen=True)
class OffSessionCharge:
    """A fee charged to a card the patient saved at booking, without them present (domain.visits)."""

    clinic_id: int
    appointment_id: int
    amount_cents: int
    currency: str
    customer_id: str
    payment_method_id: str
    description: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChargeResult:
    payment_intent_id: str
    status: str  # succeeded | processing | requires_action (the bank wants the patient: staff follow up)


class PaymentError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Payments(Protocol):
    def create_deposit_checkout(self, request: DepositRequest) -> CheckoutLink: ...

    def refund(self, payment_intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult: ...

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult: ...


# ---------------------------------------------------------------- calendar
@dataclass(frozen=True)
class BusyInterval:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class CalendarEvent:
    event_id: str  # deterministic, base32hex (Google's rule: [a-v0-9]{5,1024})
    summary: str
    start: datetime
    end: datetime
    description: str = ""


class CalendarError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Calendar(Protocol):
    def busy(self, calendar_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, list[BusyInterval]]: ...

    def upsert_event(self, calendar_id: str, event: CalendarEvent) -> None:
        """Create the event, or bring an existing one with the same id up to date."""
        ...

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete; an event that is already gone is not an error."""
        ...


# ---------------------------------------------------------------- LLM
@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it (may be malformed)


@dataclass(frozen=True)
class ChatMessage:
    """One message in OpenAI Chat Completions shape."""

    role: str  # system | user | assistant | tool
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    # (user messages) images the model may look at, as data: URLs — only when the clinic enabled a vision model
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ModelReply:
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: ModelUsage = field(default_factory=ModelUsage)
    model: str = ""


class ModelUnavailable(Exception):
    """The model could not answer within the turn's deadline (after retries)."""


@dataclass(frozen=True)
class TurnContext:
    """What a ChatModel may know beyond the messages (the offline policy uses it;
    an LLM gets the same facts inside the system prompt)."""

    clinic_timezone: str
    now: datetime
    agent_state: str
    slots: dict[str, Any] = field(default_factory=dict)  # as at the start of the turn (what the prompt said)
    patient_name: str | None = None  # the name on file, if any
    business_hours: dict[str, Any] = field(default_factory=dict)  # the clinic's weekly hours (as stored)
    holidays: tuple[str, ...] = ()  # ISO dates the clinic is closed


class ChatModel(Protocol):
    name: str

    def complete(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[dict[str, Any]],
        context: TurnContext,
    ) -> ModelReply:
        """One model step.  ``messages`` and ``tools`` are read, never modified (the tool definitions are the
        process-wide cached ones)."""
        ...


# ---------------------------------------------------------------- embeddings
class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


# ---------------------------------------------------------------- media (photos patients text)
@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    content_type: str


class MediaFetchError(Exception):
    """Fetching a media URL from the provider failed.  ``retryable``: try again later (timeouts, 5xx, 429)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class MediaFetcher(Protocol):
    def fetch(self, url: str, *, max_bytes: int) -> FetchedMedia:
        """The media behind a provider URL (with the provider's credentials); ``MediaFetchError`` on failure,
        not retryable when larger than ``max_bytes``."""
        ...


class MediaStore(Protocol):
    """Object storage for media: a local folder, or an S3-compatible bucket."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (overwriting the same bytes is harmless: keys are unique per media row)."""
        ...

    def get(self, key: str) -> bytes:
        """The stored bytes; ``KeyError`` when nothing is stored under ``key``."""
        ...

    def location(self, key: str) -> str:
        """Where staff find it: a local file path, or ``s3://bucket/key``."""
        ...
