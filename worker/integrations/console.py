"""No-credential adapters, so the agent runs on a fresh machine without accounts.

- :class:`ConsoleSmsSender` prints replies to the developer's own terminal
  (the chat simulator shows them).  This is the one place message bodies are
  printed — deliberately to stdout, never through logging, which must stay
  free of PHI.
- :class:`LocalTestPayments` hands out local "checkout" URLs that the dev
  webhook app can serve to simulate a payment.
- :class:`DatabaseOnlyCalendar`: the database is the only calendar.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from domain.ports import (
    BusyInterval,
    CalendarEvent,
    ChargeResult,
    CheckoutLink,
    DepositRequest,
    OffSessionCharge,
    OutboundSms,
    RefundResult,
    SmsSendResult,
)
from domain.segments import count_segments


@dataclass(frozen=True)
class ConsoleMessage:
    provider_message_id: str
    message: OutboundSms
    sent_at: datetime


class ConsoleSmsSender:
    """Prints ``[sms → …1234] body`` and remembers what it "sent" (so ``find_sent`` works)."""

    def __init__(self, stream: TextIO | None = None, *, keep_last: int = 10_000) -> None:
        self._stream = stream
        self._keep_last = keep_last
        self._sent: list[ConsoleMessage] = []
        self._lock = threading.Lock()

    @property
    def sent(self) -> list[ConsoleMessage]:
        with self._lock:
            return list(self._sent)

    def send(self, message: OutboundSms) -> SmsSendResult:
        provider_id = f"CONSOLE{uuid.uuid4().hex}"  # unique across worker processes
        with self._lock:
            self._sent.append(ConsoleMessage(provider_id, message, datetime.now(UTC)))
            del self._sent[: -self._keep_last]
        stream = self._stream or sys.stdout
        print(f"[sms → …{message.to[-4:]}] {message.body}", file=stream, flush=True)
        return SmsSendResult(
            provider_message_id=provider_id, status="sent", segments=count_segments(message.body).segments
        )

    def find_sent(self, message: OutboundSms, since: datetime) -> str | None:
        since_utc = since if since.tzinfo else since.replace(tzinfo=UTC)
        with self._lock:
            for item in reversed(self._sent):
                if item.sent_at < since_utc:
                    break
                if item.message.to == message.to and item.message.body == message.body:
                    return item.provider_message_id
        return None


class LocalTestPayments:
    """Deposits in local test mode: ``{public_base_url}/dev/pay/{session_id}`` instead of Stripe Checkout.

    Session ids derive from the idempotency key, so retries yield the same link
    — the same guarantee Stripe's Idempotency-Key gives.
    """

    def __init__(self, public_base_url: str) -> None:
        self._base = public_base_url.rstrip("/")
        self._sessions: dict[str, DepositRequest] = {}
        self._lock = threading.Lock()

    @staticmethod
    def session_id_for(idempotency_key: str) -> str:
        return "cs_local_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]

    def create_deposit_checkout(self, request: DepositRequest) -> CheckoutLink:
        session_id = self.session_id_for(request.idempotency_key)
        with self._lock:
            self._sessions.setdefault(session_id, request)
            first = self._sessions[session_id]
        return CheckoutLink(
            session_id=session_id, url=f"{self._base}/dev/pay/{session_id}", expires_at=first.expires_at
        )

    def session(self, session_id: str) -> DepositRequest | None:
        """The request behind a session this process created (the dev pay page may live elsewhere: use the DB)."""
        with self._lock:
            return self._sessions.get(session_id)

    def refund(self, payment_intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult:
        refund_id = "re_local_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return RefundResult(refund_id=refund_id, status="succeeded", amount_cents=amount_cents)

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        """Test mode: the charge "succeeds" (one id per idempotency key, as Stripe would answer a retry)."""
        intent = "pi_local_" + hashlib.sha256(charge.idempotency_key.encode()).hexdigest()[:24]
        return ChargeResult(payment_intent_id=intent, status="succeeded")


class DatabaseOnlyCalendar:
    """No external calendar: availability comes from the appointments table alone."""

    def busy(self, calendar_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, list[BusyInterval]]:
        return {calendar_id: [] for calendar_id in calendar_ids}

    def upsert_event(self, calendar_id: str, event: CalendarEvent) -> None:
        return None

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        return None
