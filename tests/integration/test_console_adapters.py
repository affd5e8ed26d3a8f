"""The no-credential adapters: console SMS, local test payments, database-only calendar."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from domain.ports import CalendarEvent, DepositRequest, OutboundSms
from worker.integrations.console import ConsoleSmsSender, DatabaseOnlyCalendar, LocalTestPayments


def _sms(body: str, to: str = "+15551230001") -> OutboundSms:
    return OutboundSms(outbox_id=1, clinic_id=1, to=to, from_="+15559870000", body=body)


def test_console_sms_prints_to_its_stream_and_reconciles() -> None:
    out = io.StringIO()
    sender = ConsoleSmsSender(out)
    before = datetime.now(UTC) - timedelta(seconds=1)
    result = sender.send(_sms("See you at 10:00"))

    assert out.getvalue() == "[sms → …0001] See you at 10:00\n"
    assert result.status == "sent" and result.segments == 1
    assert sender.find_sent(_sms("See you at 10:00"), before) == result.provider_message_id
    assert sender.find_sent(_sms("See you at 10:00", to="+15551230002"), before) is None
    assert sender.find_sent(_sms("See you at 10:00"), datetime.now(UTC) + timedelta(seconds=5)) is None
    assert sender.send(_sms("again")).provider_message_id != result.provider_message_id


def test_console_sms_counts_segments_like_a_carrier() -> None:
    sender = ConsoleSmsSender(io.StringIO())
    assert sender.send(_sms("x" * 161)).segments == 2
    assert sender.send(_sms("💉" * 40)).segments == 2  # UCS-2, astral chars count double


def test_local_payments_links_are_idempotent_and_local() -> None:
    payments = LocalTestPayments("http://127.0.0.1:8000/")
    request = DepositRequest(
        clinic_id=1,
        appointment_id=42,
        amount_cents=5000,
        currency="usd",
        description="Deposit",
        expires_at=datetime(2031, 1, 1, tzinfo=UTC),
        idempotency_key="deposit:42",
        success_url="http://127.0.0.1:8000/ok",
        cancel_url="http://127.0.0.1:8000/no",
    )
    first = payments.create_deposit_checkout(request)
    again = payments.create_deposit_checkout(request)
    other = payments.create_deposit_checkout(DepositRequest(**{**request.__dict__, "idempotency_key": "deposit:43"}))

    assert first == again
    assert first.url == f"http://127.0.0.1:8000/dev/pay/{first.session_id}"
    assert first.session_id == LocalTestPayments.session_id_for("deposit:42")
    assert other.session_id != first.session_id
    assert payments.session(first.session_id) == request
    refund = payments.refund("pi_x", 2500, "refund:42")
    assert refund == payments.refund("pi_x", 2500, "refund:42")
    assert refund.amount_cents == 2500 and refund.status == "succeeded"


def test_database_only_calendar_is_always_free() -> None:
    calendar = DatabaseOnlyCalendar()
    start = datetime(2031, 1, 1, 9, tzinfo=UTC)
    assert calendar.busy(["a", "b"], start, start + timedelta(hours=8)) == {"a": [], "b": []}
    calendar.upsert_event("a", CalendarEvent("abcde12345", "x", start, start + timedelta(hours=1)))
    calendar.delete_event("a", "abcde12345")
