"""What a turn reaches the world through: the conversation's database connections, the clinic directory, a clock,
the brain and its tools, the reminder-reply shortcut, the lease heartbeat and three settings — each passed in,
never the worker's whole ``Container`` (``turn_ports`` composes them from it), so the turn's rules (``think``,
``outbox_rows`` in ``worker/turns.py``) run on fakes in unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from domain.conversation import AppointmentView, Brain, Handoff, ToolExecutor, TurnOutput
from domain.ports import Clock
from worker.outbox.ports import ClinicLookup

if TYPE_CHECKING:
    from worker.container import Container
    from worker.conversations import Lease, PendingMessage, Snapshot
    from worker.leases import HeldLease


class TenantConnections(Protocol):
    """The hot path's pipeline-mode connection, one transaction scoped to one clinic (``db.engine.Database``)."""

    def tenant_connection(self, clinic_id: int) -> AbstractContextManager[psycopg.Connection[Any]]: ...


class ToolsFor(Protocol):
    """The tools of one turn, bound to its clinic, patient, conversation and lease version."""

    def __call__(
        self,
        *,
        clinic_id: int,
        client_id: int,
        conversation_id: int,
        fence_version: int,
        upcoming: Sequence[AppointmentView] | None = None,
    ) -> ToolExecutor: ...


class ReminderReply(Protocol):
    """A "C" / "YES" to a recent reminder: confirms that appointment and returns the reply to send, else None
    (``worker.automations.confirm_by_reply``)."""

    def __call__(self, clinic_id: int, client_id: int, body: str, now: datetime, /) -> str | None: ...


class WaitlistAnswer(Protocol):
    """A YES or NO to a waitlist offer texted since the patient last wrote: the turn that answers it, else None
    (``worker.waitlist.replies.answer_offer``)."""

    def __call__(self, snapshot: Snapshot, message: PendingMessage, now: datetime, /) -> TurnOutput | None: ...


class LeaseHolder(Protocol):
    """Keeps a conversation's lease alive while a turn runs (``worker.leases.LeaseKeeper``)."""

    def holding(self, clinic_id: int, lease: Lease) -> AbstractContextManager[HeldLease]: ...


@dataclass(frozen=True)
class TurnSettings:
    lease_seconds: int
    history_window: int
    quarantine_after: int  # failed deliveries / turns before an event or conversation is quarantined


@dataclass(frozen=True)
class TurnPorts:
    database: TenantConnections
    clinics: ClinicLookup
    clock: Clock
    brain: Brain
    tools: ToolsFor
    reminder_reply: ReminderReply
    leases: Callable[[], LeaseHolder]  # the process's heartbeat, started on first use
    worker_name: str
    settings: TurnSettings
    # After a turn's commit: tell open consoles, start the handoff notification (``worker.live_inbox``).
    announce: Callable[[int, int, Handoff | None], None]
    waitlist_answer: WaitlistAnswer
    # The photos of these inbound events, for a clinic that turned a vision model on (``worker.media``).
    images: Callable[[int, list[int]], tuple[str, ...]]


def turn_ports(container: Container) -> TurnPorts:
    """The turn's ports, from the worker's composition root."""
    from worker.automations import confirm_by_reply
    from worker.live_inbox import announce_turn
    from worker.media import images_for_model
    from worker.waitlist.replies import answer_offer

    database = container.database
    settings = container.settings
    return TurnPorts(
        database=database,
        clinics=container.clinic,
        clock=container.clock,
        brain=container.brain,
        tools=container.tool_executor,
        reminder_reply=lambda clinic_id, client_id, body, now: confirm_by_reply(
            database, clinic_id, client_id, body, now
        ),
        leases=container.lease_keeper,
        worker_name=container.worker_name,
        settings=TurnSettings(
            lease_seconds=settings.lease_seconds,
            history_window=settings.history_window,
            quarantine_after=settings.quarantine_after_attempts,
        ),
        announce=lambda clinic_id, conversation_id, handoff: announce_turn(
            container, clinic_id, conversation_id, handoff
        ),
        waitlist_answer=lambda snapshot, message, now: answer_offer(container, snapshot, message, now),
        images=lambda clinic_id, inbox_ids: images_for_model(
            database, *container.media(), clinic_id, inbox_ids, max_bytes=settings.media_max_bytes
        ),
    )
