"""Plain data that crosses the boundary between the pipeline and the agent brain.

The pipeline (``worker/turns.py``) loads a ``TurnInput`` in one short
transaction, hands it to the brain together with a ``ToolExecutor`` (the port
through which tools reach the database, payments and calendar), and commits the
``TurnOutput`` in one transaction.  No transaction is open while the brain runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.clinic import Clinic
from domain.ports import ChatMessage, ModelUsage

# The clinic as the turn sees it: the one clinic model (``domain.clinic.Clinic``) under its historical name.
ClinicProfile = Clinic


@dataclass(frozen=True)
class AppointmentView:
    id: int
    service_name: str
    provider_name: str
    starts_at: datetime
    ends_at: datetime
    status: str
    deposit_cents: int = 0


@dataclass(frozen=True)
class PatientProfile:
    client_id: int
    name: str | None
    email: str | None
    consent_state: str
    upcoming: tuple[AppointmentView, ...] = ()


@dataclass(frozen=True)
class TurnInput:
    clinic: ClinicProfile
    patient: PatientProfile
    conversation_id: int
    channel: str  # sms | chat
    agent_state: str
    slots: dict[str, Any]
    history: tuple[ChatMessage, ...]  # earlier messages, oldest first, bounded window
    new_messages: tuple[str, ...]  # the unanswered patient texts this turn answers, in arrival order
    now: datetime  # aware UTC
    trace_id: str = ""
    # Photos of this turn's messages as data: URLs — empty unless the clinic enabled a vision model (domain.media)
    new_images: tuple[str, ...] = ()
    # Asked before every model call and tool call: False once the pipeline can no longer vouch for this turn
    # being the conversation's only one (its lease was lost); the brain then raises ``TurnWithdrawn``.
    may_continue: Callable[[], bool] = field(default=lambda: True, compare=False, repr=False)


class TurnWithdrawn(Exception):
    """The pipeline withdrew the turn mid-way (``TurnInput.may_continue`` said no): stop at once and produce
    nothing — another worker may be answering these messages, so no reply, no commit, no further tool call."""


@dataclass(frozen=True)
class QuickReply:
    label: str
    value: str


@dataclass(frozen=True)
class Reply:
    text: str
    quick_replies: tuple[QuickReply, ...] = ()
    # The medical-safety reply to the patient's own message (call 911 / the clinic): it goes out whatever the
    # conversation's state or the patient's consent, see ``domain.audience.TextKind.SAFETY``.
    safety: bool = False


@dataclass(frozen=True)
class ToolAudit:
    call_id: str
    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]
    ok: bool
    latency_ms: int


@dataclass(frozen=True)
class Handoff:
    reason: str
    urgency: str  # low | normal | urgent | emergency


@dataclass
class TurnOutput:
    replies: list[Reply]
    transcript: list[ChatMessage]  # assistant/tool messages produced this turn, in order (eval and tests; not stored)
    agent_state: str
    slots: dict[str, Any]
    tool_audit: list[ToolAudit] = field(default_factory=list)
    model: str = ""
    usage: ModelUsage = field(default_factory=ModelUsage)
    model_latency_ms: int = 0
    steps: int = 0
    handoff: Handoff | None = None
    outcome: str = "replied"  # replied | handoff | failed | silent


class ToolExecutor(Protocol):
    """Runs one tool call for the conversation the turn belongs to.

    Clinic, patient and conversation are bound into the executor by the
    pipeline; the model only supplies ``arguments``.  Returns a JSON-able result;
    errors come back as ``{"error": "..."}`` so the model can recover.
    """

    def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]: ...


class Brain(Protocol):
    def run_turn(self, turn: TurnInput, tools: ToolExecutor) -> TurnOutput: ...
