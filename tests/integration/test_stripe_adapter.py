"""StripePayments through the real stripe SDK against the local Checkout/Refunds fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from domain.ports import DepositRequest, PaymentError
from tests.fakes.stripe_api import FakeStripeApi, signed_checkout_event, stripe_signature_header
from worker.integrations.stripe_payments import (
    StripePayments,
    StripeSignatureError,
    _expiries_within_stripe_window,
    verify_stripe_event,
)

KEY = "sk_test_fake_key_for_local_tests"
WHSEC = "whsec_test_local_secret"


@pytest.fixture
def fake() -> Iterator[FakeStripeApi]:
    with FakeStripeApi(KEY) as server:
        yield server


def _payments(fake: FakeStripeApi, **kwargs: object) -> StripePayments:
    return StripePayments(KEY, api_base=fake.base_url, **kwargs)  # type: ignore[arg-type]


def _deposit(key: str = "deposit:appt-42:v1", **kwargs: object) -> DepositRequest:
    fields: dict[str, object] = {
        "clinic_id": 3,
        "appointment_id": 42,
        "amount_cents": 5000,
        "currency": "USD",
        "description": "Deposit: Botox consultation",
        "expires_at": datetime.now(UTC) + timedelta(hours=2),
        "idempotency_key": key,
        "success_url": "https://clinic.example/paid",
        "cancel_url": "https://clinic.example/cancelled",
        "metadata": {"conversation_id": "99"},
    }
    fields.update(kwargs)
    return DepositRequest(**fields)  # type: ignore[arg-type]


def test_checkout_session_wire_format(fake: FakeStripeApi) -> None:
    request = _deposit()
    link = _payments(fake).create_deposit_checkout(request)

    assert link.session_id.startswith("cs_test_")
    assert link.url == fake.sessions[link.session_id]["url"]
    assert link.url.startswith(f"https://checkout.stripe.com/c/pay/{link.session_id}")
    assert abs((link.expires_at - request.expires_at).total_seconds()) < 1
    [sent] = fake.requests
    assert sent.header("Authorization") == f"Bearer {KEY}"
    assert sent.header("Idempotency-Key") == "deposit:appt-42:v1"
    form = dict(sent.form_pairs())
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][unit_amount]"] == "5000"
    assert form["line_items[0][price_data][product_data][name]"] == "Deposit: Botox consultation"
    assert form["line_items[0][quantity]"] == "1"
    assert form["metadata[appointment_id]"] == "42"
    assert form["metadata[clinic_id]"] == "3"
    assert form["metadata[conversation_id]"] == "99"
    assert form["payment_intent_data[metadata][appointment_id]"] == "42"
    assert form["expires_at"] == str(int(request.expires_at.timestamp()))
    fake.assert_clean()


def test_same_idempotency_key_gives_the_same_session(fake: FakeStripeApi) -> None:
    payments = _payments(fake)
    request = _deposit()
    first = payments.create_deposit_checkout(request)
    second = payments.create_deposit_checkout(request)
    assert second == first
    assert len(fake.sessions) == 1
    assert fake.requests[1].header("Idempotency-Key") == fake.requests[0].header("Idempotency-Key")
    other = payments.create_deposit_checkout(_deposit("deposit:appt-43:v1", appointment_id=43))
    assert other.session_id != first.session_id


def test_reused_key_with_other_params_is_a_final_error(fake: FakeStripeApi) -> None:
    payments = _payments(fake)
    payments.create_deposit_checkout(_deposit())
    with pytest.raises(PaymentError) as caught:
        payments.create_deposit_checkout(_deposit(amount_cents=9900))
    assert caught.value.retryable is False


def test_expiry_is_kept_inside_stripes_window(fake: FakeStripeApi) -> None:
    payments = _payments(fake)
    soon = payments.create_deposit_checkout(_deposit("k1", expires_at=datetime.now(UTC) + timedelta(minutes=5)))
    late = payments.create_deposit_checkout(_deposit("k2", expires_at=datetime.now(UTC) + timedelta(days=3)))
    now = datetime.now(UTC)
    assert timedelta(minutes=30) < soon.expires_at - now <= timedelta(minutes=41)  # on a 10-minute grid
    assert timedelta(hours=23) < late.expires_at - now < timedelta(hours=24)
    fake.assert_clean()


def test_a_retried_short_hold_gets_the_same_session(fake: FakeStripeApi) -> None:
    # A hold shorter than Stripe's 30 minutes is clamped by the clock; a retry must send the same parameters.
    # A call whose earliest allowed expiry (31 minutes ahead) falls just before a 10-minute grid line.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    start += timedelta(seconds=(598 - int((start + timedelta(minutes=31)).timestamp())) % 600)
    now = [start]
    payments = _payments(fake, clock=lambda: now[0])
    request = _deposit(expires_at=now[0] + timedelta(minutes=10))
    first = payments.create_deposit_checkout(request)
    now[0] += timedelta(seconds=1)  # a retry in a later second
    assert payments.create_deposit_checkout(request) == first
    now[0] += timedelta(seconds=5)  # and one past the grid line: its first guess differs, the fallback matches
    assert payments.create_deposit_checkout(request) == first
    assert len(fake.sessions) == 1


def test_clamped_expiry_is_reproducible_across_the_grid() -> None:
    now = datetime(2027, 3, 2, 10, 0, 1, tzinfo=UTC)
    wanted = now + timedelta(minutes=10)
    first = _expiries_within_stripe_window(wanted, now)
    assert first == _expiries_within_stripe_window(wanted, now + timedelta(seconds=30))  # same cell: same values
    later = _expiries_within_stripe_window(wanted, now + timedelta(minutes=10))  # the next cell
    assert later[1] == first[0]  # its fallback is what the earlier attempt sent
    assert all(value >= int((now + timedelta(minutes=31)).timestamp()) for value in first[:1])
    inside = now + timedelta(hours=2)
    assert _expiries_within_stripe_window(inside, now) == [int(inside.timestamp())]
    far = _expiries_within_stripe_window(now + timedelta(days=3), now)
    assert far[0] <= int((now + timedelta(hours=23, minutes=59)).timestamp())


@pytest.mark.parametrize("failure", ["rate_limit", "500", "503"])
def test_rate_limit_and_server_errors_are_retryable(fake: FakeStripeApi, failure: str) -> None:
    if failure == "rate_limit":
        fake.rate_limit_next()
    else:
        fake.server_error_next(status=int(failure))
    payments = _payments(fake)
    with pytest.raises(PaymentError) as caught:
        payments.create_deposit_checkout(_deposit())
    assert caught.value.retryable is True
    assert len(fake.requests) == 1  # the SDK's own retries are off
    assert payments.create_deposit_checkout(_deposit()).session_id.startswith("cs_test_")


def test_timeout_and_connection_errors_are_retryable(fake: FakeStripeApi) -> None:
    fake.delay_next(5.0)
    with pytest.raises(PaymentError) as caught:
        _payments(fake, timeout=0.3).create_deposit_checkout(_deposit())
    assert caught.value.retryable is True

    with FakeStripeApi(KEY) as gone:
        dead = gone.base_url
    with pytest.raises(PaymentError) as caught:
        StripePayments(KEY, api_base=dead, timeout=2).create_deposit_checkout(_deposit())
    assert caught.value.retryable is True


def test_client_errors_are_final(fake: FakeStripeApi) -> None:
    with pytest.raises(PaymentError) as caught:
        StripePayments("sk_test_wrong", api_base=fake.base_url).create_deposit_checkout(_deposit())
    assert caught.value.retryable is False

    fake.card_declined_next()
    with pytest.raises(PaymentError) as caught:
        _payments(fake).refund("pi_123", 5000, "refund:appt-42")
    assert caught.value.retryable is False


def test_refund_wire_format_and_idempotency(fake: FakeStripeApi) -> None:
    payments = _payments(fake)
    result = payments.refund("pi_3abc", 2500, "refund:appt-42")
    again = payments.refund("pi_3abc", 2500, "refund:appt-42")

    assert result.refund_id.startswith("re_") and result.status == "succeeded" and result.amount_cents == 2500
    assert again == result
    assert len(fake.refunds) == 1
    sent = fake.requests_to("POST", "/v1/refunds")[0]
    assert dict(sent.form_pairs()) == {"payment_intent": "pi_3abc", "amount": "2500"}
    assert sent.header("Idempotency-Key") == "refund:appt-42"
    fake.assert_clean()


# ---------------------------------------------------------------- webhook signatures
_SESSION = {"id": "cs_test_abc", "object": "checkout.session", "metadata": {"appointment_id": "42", "clinic_id": "3"}}


def test_signature_helper_matches_the_sdk_scheme() -> None:
    body = b'{"id":"evt_1","type":"checkout.session.completed","data":{"object":{}}}'
    ours = stripe_signature_header(body, WHSEC, timestamp=1_700_000_000)
    theirs = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, timestamp=1_700_000_000)
    assert ours == theirs


@pytest.mark.parametrize("event_type", ["checkout.session.completed", "checkout.session.expired"])
def test_verify_accepts_a_correctly_signed_event(event_type: str) -> None:
    body, header = signed_checkout_event(event_type, _SESSION, WHSEC)
    event = verify_stripe_event(body, header, WHSEC)
    assert event["type"] == event_type
    assert event["data"]["object"]["metadata"]["appointment_id"] == "42"
    expected_status = "complete" if event_type.endswith("completed") else "expired"
    assert event["data"]["object"]["status"] == expected_status


def test_verify_rejects_wrong_secret_tampering_staleness_and_absence() -> None:
    body, header = signed_checkout_event("checkout.session.completed", _SESSION, WHSEC)
    with pytest.raises(StripeSignatureError):
        verify_stripe_event(body, header, "whsec_other")
    with pytest.raises(StripeSignatureError):
        verify_stripe_event(body.replace(b"42", b"43"), header, WHSEC)
    with pytest.raises(StripeSignatureError):
        verify_stripe_event(body, "", WHSEC)
    stale_body, stale_header = signed_checkout_event(
        "checkout.session.completed", _SESSION, WHSEC, timestamp=int(time.time()) - 301
    )
    with pytest.raises(StripeSignatureError):
        verify_stripe_event(stale_body, stale_header, WHSEC)
    assert verify_stripe_event(stale_body, stale_header, WHSEC, tolerance=600)["type"] == "checkout.session.completed"


def test_verify_fails_closed_without_a_secret_and_on_non_json() -> None:
    body, header = signed_checkout_event("checkout.session.completed", _SESSION, WHSEC)
    with pytest.raises(RuntimeError):
        verify_stripe_event(body, header, "")
    junk = b"not json"
    with pytest.raises(ValueError) as caught:
        verify_stripe_event(junk, stripe_signature_header(junk, WHSEC), WHSEC)
    assert not isinstance(caught.value, StripeSignatureError)  # 400, not 403
