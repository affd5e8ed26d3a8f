"""In-memory ports for the outbox's senders (``worker.outbox.ports``): the outbox rows, the SMS provider, a clock,
the rate limiter and the chat stream — so the state machine runs in unit tests with no database, Redis or Twilio.

``FakeOutbox`` applies the same verdicts as ``worker.outbox.store.PostgresOutbox`` (the SQL there, plain
assignments here); the decisions under test — the claim rule, the send decision, the sender's steps — are the
real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.audience import RecipientFacts
from domain.conversation import ClinicProfile
from domain.outbox import ORDERED_KINDS, SENT_OVER, UNSENT, ClaimAction, Verdict
from domain.ports import OutboundSms, SmsSendError, SmsSendResult
from worker.outbox.ports import ChunkClaim, Judge, SendPorts, SendSettings
from worker.outbox.rows import Claim, Failure, SendRow, SentMark

CLINIC_TZ = "America/Los_Angeles"
CLINIC = ClinicProfile(
    id=1,
    name="Test Spa",
    timezone=CLINIC_TZ,
    phone="+14155550000",
    address="",
    business_hours={},
    holidays=[],
    policies={"marketing_cap_per_week": 2, "opt_out_footer": "Reply STOP to opt out."},
)
ROUTING = {"sms_number": "+14155550123", "messaging_service_sid": None}


@dataclass
class Stored:
    """One outbox row and what the senders wrote on it."""

    row: SendRow
    status: str = "queued"
    attempts: int = 0
    not_before: datetime | None = None
    claim_token: int | None = None
    error: str = ""
    provider_id: str | None = None
    sent_at: datetime | None = None

    def as_read(self) -> SendRow:
        return replace(self.row, status=self.status, attempts=self.attempts, not_before=self.not_before)


@dataclass
class FakeOutbox:
    rows: dict[int, Stored] = field(default_factory=dict)
    campaign_status: dict[int, str] = field(default_factory=dict)
    appointment_status: dict[int, str] = field(default_factory=dict)
    records: int = 0  # ``record`` calls: one round trip each in Postgres
    deferred_records: int = 0  # of them, those the caller let wait for the batched recorder (``later``)
    claims: int = 0  # claiming transactions
    failures: list[Failure] = field(default_factory=list)
    lose_claims_on_renew: set[int] = field(default_factory=set)  # rows the sweeper took back meanwhile

    def add(self, row: SendRow, *, status: str = "queued", attempts: int = 0) -> SendRow:
        self.rows[row.id] = Stored(row, status=status, attempts=attempts, not_before=row.not_before)
        return row

    def status(self, outbox_id: int) -> str:
        return self.rows[outbox_id].status

    # -------------------------------------------------------------- reads, as the locked read computes them
    def _read(self, outbox_id: int) -> SendRow:
        stored = self.rows[outbox_id]
        row = stored.as_read()
        earlier = (
            row.conversation_id is not None
            and row.kind in ORDERED_KINDS
            and any(
                other.row.conversation_id == row.conversation_id
                and other_id < outbox_id
                and other.row.channel == row.channel
                and other.status in UNSENT
                and other.row.kind in ORDERED_KINDS
                for other_id, other in self.rows.items()
            )
        )
        appointment_id = row.meta.get("appointment_id") if row.kind == "automation" else None
        return replace(
            row,
            earlier_unsent=earlier,
            appointment_status=self.appointment_status.get(int(appointment_id)) if appointment_id else None,
            campaign_status=self.campaign_status.get(row.campaign_id or 0) if row.kind == "campaign" else None,
        )

    def _apply(self, claim: Claim, row: SendRow, verdict: Verdict) -> None:
        stored = self.rows[row.id]
        if verdict.action is ClaimAction.SUPPRESS:
            stored.status, stored.error = "suppressed", verdict.reason
        elif verdict.action is ClaimAction.DEFER:
            stored.not_before = verdict.until
        elif verdict.action is ClaimAction.GIVE_UP:
            stored.status, stored.error = "failed", verdict.reason
        elif verdict.action is ClaimAction.CLAIM:
            stored.status, stored.attempts, stored.claim_token = "sending", stored.attempts + 1, claim.token

    # -------------------------------------------------------------- OutboxStore
    def claim_one(self, clinic_id: int, outbox_id: int, claim: Claim, judge: Judge) -> tuple[SendRow | None, Verdict]:
        self.claims += 1
        if outbox_id not in self.rows:
            return None, Verdict(ClaimAction.SKIP)
        row = self._read(outbox_id)
        verdict = judge(row)
        self._apply(claim, row, verdict)
        return row, verdict

    def claim_campaign_chunk(
        self, clinic_id: int, campaign_id: int, outbox_ids: Sequence[int], claim: Claim, judge: Judge, now: datetime
    ) -> ChunkClaim:
        self.claims += 1
        result = ChunkClaim()
        if self.campaign_status.get(campaign_id) in ("paused", "cancelled"):
            result.stopped = self.campaign_status[campaign_id]
            return result
        for outbox_id in sorted(outbox_ids):
            stored = self.rows.get(outbox_id)
            if stored is None or stored.status != "queued" or (stored.not_before and stored.not_before > now):
                continue
            row = self._read(outbox_id)
            verdict = judge(row)
            self._apply(claim, row, verdict)
            if verdict.action is ClaimAction.CLAIM:
                result.rows.append(row)
            elif verdict.action is ClaimAction.SUPPRESS:
                result.suppressed += 1
            elif verdict.action is ClaimAction.DEFER:
                result.deferred += 1
        return result

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
        self.records += 1
        if later and not failed and not renew:  # as ``PostgresOutbox``: only sends alone may wait
            self.deferred_records += 1
        for mark in sent:
            stored = self.rows[mark.outbox_id]
            if stored.status in SENT_OVER:
                stored.status, stored.sent_at = "sent", mark.at or datetime.now(UTC)
                stored.provider_id = mark.provider_id or stored.provider_id
        for failure in failed:
            stored = self.rows[failure.outbox_id]
            if stored.status == "sending" and stored.claim_token == claim.token:
                stored.status, stored.error = "failed", failure.message
                self.failures.append(failure)
        for outbox_id in renew:
            if outbox_id in self.lose_claims_on_renew:
                self.rows[outbox_id].status, self.rows[outbox_id].claim_token = "unknown", None
        return {i for i in renew if self.rows[i].status == "sending" and self.rows[i].claim_token == claim.token}

    def release(
        self, clinic_id: int, claim: Claim, outbox_ids: Sequence[int], *, not_before: datetime | None = None
    ) -> None:
        for outbox_id in outbox_ids:
            stored = self.rows[outbox_id]
            if stored.status == "sending" and stored.claim_token == claim.token:
                stored.status, stored.attempts = "queued", stored.attempts - 1
                stored.not_before = not_before or stored.not_before

    def mark_unknown(self, clinic_id: int, claim: Claim, outbox_id: int) -> None:
        stored = self.rows[outbox_id]
        if stored.status == "sending" and stored.claim_token == claim.token:
            stored.status = "unknown"


@dataclass
class FakeSms:
    """The provider: accepts (or fails with the queued errors) and remembers what it has."""

    errors: list[SmsSendError] = field(default_factory=list)  # raised by the next sends, in order
    sent: list[OutboundSms] = field(default_factory=list)
    found: dict[int, str] = field(default_factory=dict)  # outbox id → provider id it already has
    find_error: SmsSendError | None = None
    on_send: Any = None  # called before each send (a test moving the clock, say)

    def send(self, message: OutboundSms) -> SmsSendResult:
        if self.on_send is not None:
            self.on_send(message)
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)
        return SmsSendResult(f"SM{len(self.sent)}", "queued", 1)

    def find_sent(self, message: OutboundSms, since: datetime) -> str | None:
        if self.find_error is not None:
            raise self.find_error
        return self.found.get(message.outbox_id)


@dataclass
class FakeClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass
class FakeLimiter:
    waits: list[int] = field(default_factory=list)  # the next acquires' answers (then 0)

    def acquire(self, sender: str, *, bulk: bool = False) -> int:
        return self.waits.pop(0) if self.waits else 0


@dataclass
class FakeChat:
    published: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)

    def publish(self, conversation_id: int, message: Mapping[str, Any]) -> None:
        self.published.append((conversation_id, message))


@dataclass
class Fakes:
    outbox: FakeOutbox
    sms: FakeSms
    clock: FakeClock
    limiter: FakeLimiter
    chat: FakeChat
    ports: SendPorts


def fakes(now: datetime, *, claim_fresh_s: float = 60.0) -> Fakes:
    outbox, sms, clock, limiter, chat = FakeOutbox(), FakeSms(), FakeClock(now), FakeLimiter(), FakeChat()
    ports = SendPorts(
        store=outbox,
        sms=sms,
        clock=clock,
        limiter=limiter,
        chat=chat,
        clinics=lambda clinic_id: (CLINIC, ROUTING),
        settings=SendSettings(claim_fresh_s=claim_fresh_s, public_base_url="https://spa.example"),
    )
    return Fakes(outbox, sms, clock, limiter, chat, ports)


def sms_row(
    outbox_id: int,
    *,
    kind: str = "reply",
    consent: str = "opted_in",
    marketing: str = "granted",
    sms_status: str = "ok",
    conversation_id: int | None = None,
    campaign_id: int | None = None,
    meta: dict[str, Any] | None = None,
    timezone: str | None = CLINIC_TZ,
) -> SendRow:
    phone = f"+1628555{outbox_id:04d}"
    return SendRow(
        id=outbox_id,
        channel="sms",
        kind=kind,
        status="queued",
        to_address=phone,
        from_address="",
        body=f"text {outbox_id}",
        meta=dict(meta or ({"marketing": True} if kind == "campaign" else {})),
        conversation_id=conversation_id,
        client_id=outbox_id,
        created_at=datetime(2026, 3, 2, 18, tzinfo=UTC) - timedelta(minutes=5),
        campaign_id=campaign_id,
        recipient=RecipientFacts(
            client_id=outbox_id,
            phone=phone,
            consent_state=consent,
            sms_status=sms_status,
            marketing_consent=marketing,
            timezone=timezone,
        ),
    )
