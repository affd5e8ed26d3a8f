"""What travels through the outbox: a row to queue, a row as a sender claimed it, a claim, a send's outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.audience import RecipientFacts
from domain.outbox import UNKNOWN, ClaimFacts, subject_gone
from medspa.ids import fast_int63


@dataclass
class OutboxRow:
    """A text to queue (``worker.outbox.writes.insert_rows``, or the turn's fenced commit)."""

    channel: str
    kind: str
    to_address: str
    from_address: str
    body: str
    client_id: int | None
    conversation_id: int | None
    priority: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    trace_id: str = ""
    # The send decision for a turn's reply (``domain.audience.decide`` on the snapshot's facts, made by the turn):
    # the commit claims the reply for an immediate send only when it is True and those facts still hold.
    send_now: bool = True


@dataclass
class ClaimedSend:
    """An outbox row the turn's own commit claimed (``sending``) for the worker to send right away."""

    id: int
    channel: str
    kind: str
    to_address: str
    from_address: str
    body: str
    meta: dict[str, Any]
    conversation_id: int | None
    client_id: int | None
    trace_id: str
    claim_token: int  # written by the claiming commit; re-verified before the provider call (``Claim``)
    claim_started: float  # monotonic, taken as the claiming commit began (CLAIM_MARGIN_S covers the rest)
    committed_at: float = field(default_factory=time.monotonic)  # for the outbox-lag metric


@dataclass
class Claim:
    """A sender's claim on outbox rows: the token its claim wrote, and the monotonic time taken just before the
    claiming (or last renewing) transaction started — the rows' ``claimed_at`` is no earlier than that.

    Why fenced: the sweeper takes a claimed row back (``unknown``) once its ``claimed_at`` is
    ``OUTBOX_SWEEP_AFTER_S`` old, and another worker may then re-claim, reconcile and send it.  A sender whose
    claim is no longer fresh re-verifies it (``claim_token``) right before the provider call, and records every
    outcome but "sent" only under its own token."""

    token: int
    renewed_at: float

    @classmethod
    def start(cls) -> Claim:
        """Call right before the transaction that claims the rows (it writes ``claim_token = token``)."""
        return cls(fast_int63(), time.monotonic())

    def is_fresh(self, fresh_s: float) -> bool:
        return time.monotonic() - self.renewed_at < fresh_s


@dataclass(frozen=True)
class SendRow:
    """An outbox row as a sender reads it, locked in its claiming transaction, with what the claim rule and the
    send decision need: the recipient as they are now, what the text is about, what is queued before it."""

    id: int
    channel: str
    kind: str
    status: str  # before this sender's claim ('unknown': reconcile with the provider before any send)
    to_address: str
    from_address: str
    body: str
    meta: dict[str, Any]
    conversation_id: int | None
    client_id: int | None
    trace_id: str = ""
    not_before: datetime | None = None
    attempts: int = 0
    created_at: datetime | None = None
    claimed_at: datetime | None = None
    campaign_id: int | None = None
    recipient: RecipientFacts | None = None  # None: no client row (web chat, a staff notification)
    number_opted_out: bool = False  # (no client row) the number itself opted out in the ledger
    appointment_status: str | None = None  # (automation texts) the appointment it is about, as it is now
    campaign_status: str | None = None  # (campaign texts)
    earlier_unsent: bool = False  # (ordered reply kinds) an earlier reply of the conversation waits to go out
    # (``domain.outbox.STOP_ONCE_BOOKED`` automations) the client has an upcoming visit now; False for other rows
    client_has_upcoming_visit: bool = False

    @property
    def was_unknown(self) -> bool:
        return self.status == UNKNOWN

    def claim_facts(self) -> ClaimFacts:
        return ClaimFacts(
            status=self.status,
            kind=self.kind,
            not_before=self.not_before,
            attempts=self.attempts,
            earlier_unsent=self.earlier_unsent,
            subject_gone=subject_gone(
                self.kind, self.meta, self.appointment_status, self.campaign_status, self.client_has_upcoming_visit
            ),
        )

    @classmethod
    def from_claimed(cls, claimed: ClaimedSend) -> SendRow:
        """A row the turn's commit claimed: consent and order were checked in that transaction."""
        return cls(
            id=claimed.id,
            channel=claimed.channel,
            kind=claimed.kind,
            status="sending",
            to_address=claimed.to_address,
            from_address=claimed.from_address,
            body=claimed.body,
            meta=claimed.meta,
            conversation_id=claimed.conversation_id,
            client_id=claimed.client_id,
            trace_id=claimed.trace_id,
        )


@dataclass(frozen=True)
class SentMark:
    """The provider has it: recorded as sent whoever holds the row now."""

    outbox_id: int
    provider_id: str | None
    segments: int | None
    at: datetime | None = None  # None: the recording transaction's time


@dataclass(frozen=True)
class Failure:
    """A permanent provider error: recorded under the sender's claim, with the carrier's verdict on the number."""

    outbox_id: int
    client_id: int | None
    to_address: str
    code: str | None
    message: str
