"""The conversation pipeline's typed rows: the lease, the snapshot a turn works from, what attach and commit
return.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from domain.conversation import AppointmentView, TurnOutput
from domain.ports import ChatMessage
from worker.outbox.rows import ClaimedSend

Conn = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]


class StaleTurn(Exception):
    """The lease was taken over (or the conversation changed) while this worker ran the turn."""


@dataclass(frozen=True)
class Lease:
    conversation_id: int
    owner: str
    version: int
    failed_turns: int
    took_over: bool = False  # the previous holder's lease had expired (it died or stalled)
    # Monotonic time taken before the transaction that took the lease: the lease is valid for LEASE_SECONDS from
    # no earlier than this (worker/leases.py keeps it alive from there).
    taken_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass
class PendingMessage:
    id: int
    seq: int
    body: str
    meta: dict[str, Any]


@dataclass
class Snapshot:
    lease: Lease
    clinic_id: int
    client_id: int
    channel: str
    client_phone: str | None
    consent_state: str
    agent_state: str
    slots: dict[str, Any]
    answered_seq: int
    pending: list[PendingMessage]
    history: list[ChatMessage]
    upcoming: list[AppointmentView]
    client_name: str | None
    client_email: str | None
    # The patient's answered texts of the last minutes, oldest first (``domain.agent_loop.EARLIER_TEXTS_WITHIN``,
    # at most ``EARLIER_TEXTS_SCREENED``): the safety screen reads them with the pending ones.
    recent_inbound: list[str] = field(default_factory=list)
    sms_status: str = "ok"  # the client's number status, with consent_state what the inline send decision reads
    trace_id: str = ""
    # Set by the turn runner to its held lease's check (worker/leases.py); handed to the brain in TurnInput.
    may_continue: Callable[[], bool] = field(default=lambda: True, repr=False)

    @property
    def last_seq(self) -> int:
        return self.pending[-1].seq if self.pending else self.answered_seq


@dataclass
class Attached:
    conversation_id: int
    outbox_ids: list[int] = field(default_factory=list)  # compliance replies to send after commit
    media_ids: list[int] = field(default_factory=list)  # photos recorded: to fetch and store after commit
    newly_attached: int = 0
    snapshot: Snapshot | None = None  # this worker took the lease: the turn to run
    failing: Lease | None = None  # the lease was taken, but the conversation failed too often (quarantine it)


# ------------------------------------------------------------------ commit
@dataclass
class TurnRecord:
    output: TurnOutput
    started_at: datetime
    latency_ms: int
    worker: str
    trace_id: str


@dataclass
class Committed:
    outbox_ids: list[int]  # queued rows for the send actor (not claimed here)
    claimed: list[ClaimedSend]  # rows this commit claimed: send them now, in order
    more_pending: bool  # newer messages arrived during the turn: the lease is kept for one more turn


# The fence: nothing of a stale turn may commit.  The UPDATE matches only while this worker still holds the lease
# at the version it took; otherwise medspa_stale_turn raises (SQLSTATE MS001, migration 0003), aborting the
# transaction and everything queued behind it in the same round trip.
STALE_TURN_SQLSTATE = "MS001"
