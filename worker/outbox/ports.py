"""What the outbox's senders reach the world through: the outbox rows, the SMS provider, a clock, the shared
rate limiter, the chat stream, the clinic directory and two settings — each passed in, never the worker's
whole ``Container`` (``send_ports`` composes them from it), so the state machine runs on fakes in unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import redis

from domain.conversation import ClinicProfile
from domain.outbox import Verdict
from domain.ports import Clock, SmsSender
from worker.outbox.rows import Claim, Failure, SendRow, SentMark

if TYPE_CHECKING:
    from worker.container import Container
    from worker.sms_rate import SmsRateLimiter

CLAIM_MARGIN_S = 1.0  # slack for clock rates and the time between "fresh" and the request leaving the process

Judge = Callable[[SendRow], Verdict]  # the claim rule for one row (``domain.outbox.claim_verdict``)
ClinicLookup = Callable[[int], tuple[ClinicProfile, Mapping[str, Any]]]  # profile + routing (sms number, …)


@dataclass
class ChunkClaim:
    """A chunk of campaign rows decided again and claimed in one transaction."""

    rows: list[SendRow] = field(default_factory=list)  # claimed: this sender's to send now
    suppressed: int = 0
    deferred: int = 0  # the recipient's window is closed: ``not_before`` set, left queued
    stopped: str | None = None  # the campaign is paused / cancelled: nothing was claimed


class OutboxStore(Protocol):
    """The outbox rows as a sender moves them (Postgres: ``worker.outbox.store.PostgresOutbox``).  Every method is
    one transaction of its own; everything but "sent" is written only under the sender's claim token."""

    def claim_one(self, clinic_id: int, outbox_id: int, claim: Claim, judge: Judge) -> tuple[SendRow | None, Verdict]:
        """Lock the row, apply ``judge``'s verdict (suppress, defer, give up, claim under ``claim``)."""
        ...

    def claim_campaign_chunk(
        self, clinic_id: int, campaign_id: int, outbox_ids: Sequence[int], claim: Claim, judge: Judge, now: datetime
    ) -> ChunkClaim:
        """Unless the campaign is paused or cancelled: lock its queued, due rows among ``outbox_ids`` and apply
        ``judge``'s verdict to each."""
        ...

    def record(
        self,
        clinic_id: int,
        claim: Claim,
        *,
        sent: Sequence[SentMark] = (),
        failed: Sequence[Failure] = (),
        renew: Sequence[int] = (),
        later: bool = False,
    ) -> set[int]:
        """Record outcomes (one round trip) and, with ``renew``, re-verify and extend the claim on those rows:
        returns the ``renew`` rows still held.  The caller then sets ``claim.renewed_at``.  ``later``: marks that are
        all there is (nothing failed, nothing to renew) may be written a few milliseconds later, batched with other
        sends' (``worker.outbox.sent_marks``) — only for rows no send of this caller follows."""
        ...

    def release(
        self, clinic_id: int, claim: Claim, outbox_ids: Sequence[int], *, not_before: datetime | None = None
    ) -> None:
        """Back to ``queued`` (attempt undone), from ``not_before`` when given."""
        ...

    def mark_unknown(self, clinic_id: int, claim: Claim, outbox_id: int) -> None:
        """The provider may or may not have it: reconcile before any re-send."""
        ...


class RateLimiter(Protocol):
    def acquire(self, sender: str, *, bulk: bool = False) -> int:
        """0 when a send may go now, else milliseconds to wait (``worker/sms_rate.py``)."""
        ...


class ChatPublisher(Protocol):
    def publish(self, conversation_id: int, message: Mapping[str, Any]) -> None:
        """Put a message on the conversation's chat stream (the open widget reads it)."""
        ...


@dataclass(frozen=True)
class SendSettings:
    claim_fresh_s: float  # for how long after a claim a provider call may start without re-verifying it
    public_base_url: str  # where the provider's status callbacks go

    @classmethod
    def of(cls, outbox_sweep_after_s: float, sms_send_timeout_s: float, public_base_url: str) -> SendSettings:
        """The sweeper takes a claimed row back only when its ``claimed_at`` is ``OUTBOX_SWEEP_AFTER_S`` old.  A
        provider call started within that deadline minus the call's timeout (and a margin) ends before that can
        happen, so nobody else can hold the row yet; later, the claim is re-verified first."""
        return cls(outbox_sweep_after_s - sms_send_timeout_s - CLAIM_MARGIN_S, public_base_url.rstrip("/"))


@dataclass(frozen=True)
class SendPorts:
    store: OutboxStore
    sms: SmsSender
    clock: Clock
    limiter: RateLimiter
    chat: ChatPublisher
    clinics: ClinicLookup
    settings: SendSettings


def chat_stream_key(conversation_id: int) -> str:
    return f"chat:stream:{conversation_id}"


class RedisChatPublisher:
    """The chat widget's stream (``webhooks/chat_streams.py`` reads it): the message, then typing off."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def publish(self, conversation_id: int, message: Mapping[str, Any]) -> None:
        key = chat_stream_key(conversation_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(key, {"event": "message", "data": json.dumps(message)}, maxlen=500, approximate=True)
        pipe.xadd(key, {"event": "typing", "data": json.dumps({"on": False})}, maxlen=500, approximate=True)
        pipe.execute()


def send_ports(container: Container, limiter: SmsRateLimiter) -> SendPorts:
    """The senders' ports from the worker's composition root (thin wrappers: cheap to build per message)."""
    from worker.outbox.store import PostgresOutbox

    settings = container.settings
    return SendPorts(
        store=PostgresOutbox(container.database, container.sent_marks()),
        sms=container.sms,
        clock=container.clock,
        limiter=limiter,
        chat=RedisChatPublisher(container.redis),
        clinics=container.clinic,
        settings=SendSettings.of(settings.outbox_sweep_after_s, settings.sms_send_timeout_s, settings.public_base_url),
    )
