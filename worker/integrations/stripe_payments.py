"""Payments backed by Stripe Checkout through the official ``stripe`` SDK.

Deposits are Checkout Sessions created with an Idempotency-Key, so a retried
outbox job gets the same session back instead of a second payment link.  The
SDK's own network retries are off: the calling actor retries, and this
adapter only says whether a failure is worth retrying.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from domain.ports import ChargeResult, CheckoutLink, DepositRequest, OffSessionCharge, PaymentError, RefundResult

log = logging.getLogger(__name__)

# Stripe accepts a Checkout Session expiry between 30 minutes and 24 hours ahead.
_MIN_EXPIRY = timedelta(minutes=31)
_MAX_EXPIRY = timedelta(hours=23, minutes=59)
# An expiry clamped into that window is rounded to this grid so that a retry moments later sends the same
# parameters (Stripe answers an idempotency key reused with different parameters with an error, not the session).
_EXPIRY_GRID_S = 600


class StripeSignatureError(ValueError):
    """A Stripe webhook whose signature is missing, wrong or too old: answer 403, enqueue nothing."""


class StripePayments:
    """Checkout Sessions for deposits and refunds of their PaymentIntents."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._now = clock  # Stripe's expiry window is measured from the call
        addresses: dict[str, str] = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=addresses,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def create_deposit_checkout(self, request: DepositRequest) -> CheckoutLink:
        metadata = {
            **request.metadata,
            "appointment_id": str(request.appointment_id),
            "clinic_id": str(request.clinic_id),
        }
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": request.description},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": str(request.appointment_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        if request.save_card_terms:
            # The clinic charges no-show / late-cancel fees to a saved card: Checkout tells the patient the card is
            # saved for later payments, shows the clinic's wording next to the pay button, and attaches the card to
            # a Customer created for it (the webhook records both ids: worker/visits/cards.py).
            params["payment_intent_data"]["setup_future_usage"] = "off_session"
            params["customer_creation"] = "always"
            params["custom_text"] = {"submit": {"message": request.save_card_terms[:1200]}}
        candidates = _expiries_within_stripe_window(request.expires_at, self._now())
        for index, expires_at in enumerate(candidates):
            try:
                session = self._client.v1.checkout.sessions.create(
                    params={**params, "expires_at": expires_at},  # type: ignore[arg-type]
                    options={"idempotency_key": request.idempotency_key},
                )
                break
            except stripe.IdempotencyError as exc:
                # The first attempt clamped its expiry in the previous grid cell: its parameters get its session.
                if index + 1 < len(candidates):
                    continue
                raise _classify(exc, what="checkout", ref=request.appointment_id) from exc
            except stripe.StripeError as exc:
                raise _classify(exc, what="checkout", ref=request.appointment_id) from exc
        if not session.url:
            raise PaymentError("stripe returned a session without a url", retryable=False)
        return CheckoutLink(
            session_id=session.id,
            url=session.url,
            expires_at=datetime.fromtimestamp(session.expires_at, tz=UTC),
        )

    def refund(self, payment_intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult:
        try:
            refund = self._client.v1.refunds.create(
                params={"payment_intent": payment_intent_id, "amount": amount_cents},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _classify(exc, what="refund", ref=payment_intent_id) from exc
        return RefundResult(refund_id=refund.id, status=str(refund.status), amount_cents=int(refund.amount))

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        """A PaymentIntent confirmed at once on the saved card, the patient not present (``off_session``).

        The caller's idempotency key makes every retry the same charge.  A bank that wants the patient to
        authenticate answers 402 ``authentication_required`` with the PaymentIntent: that is a result
        (``requires_action``: staff follow up), not an error to retry; any other decline is final."""
        params: dict[str, Any] = {
            "amount": charge.amount_cents,
            "currency": charge.currency.lower(),
            "customer": charge.customer_id,
            "payment_method": charge.payment_method_id,
            "off_session": True,
            "confirm": True,
            "description": charge.description,
            "metadata": {
                **charge.metadata,
                "appointment_id": str(charge.appointment_id),
                "clinic_id": str(charge.clinic_id),
            },
        }
        try:
            intent = self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": charge.idempotency_key},
            )
        except stripe.CardError as exc:
            pending = (exc.error.payment_intent if exc.error else None) or None
            if exc.code == "authentication_required" and pending is not None:
                return ChargeResult(payment_intent_id=str(pending.id), status="requires_action")
            raise _classify(exc, what="off-session charge", ref=charge.appointment_id) from exc
        except stripe.StripeError as exc:
            raise _classify(exc, what="off-session charge", ref=charge.appointment_id) from exc
        return ChargeResult(payment_intent_id=intent.id, status=str(intent.status))


def verify_stripe_event(payload: bytes, sig_header: str | None, secret: str, tolerance: int = 300) -> dict[str, Any]:
    """Check a webhook's ``Stripe-Signature`` and return the event as a plain dict.

    Raises :class:`StripeSignatureError` for a missing/invalid/stale signature
    and ``ValueError`` for a body that isn't a JSON event.
    """
    if not secret:
        raise RuntimeError("STRIPE_WEBHOOK_SECRET is not configured")  # fail closed, never skip the check
    try:
        stripe.Webhook.construct_event(payload, sig_header, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise StripeSignatureError(str(exc).split("\n")[0]) from exc
    except json.JSONDecodeError as exc:
        raise ValueError("stripe webhook body is not JSON") from exc
    event = json.loads(payload)
    if not isinstance(event, dict) or "type" not in event or "data" not in event:
        raise ValueError("stripe webhook body is not an event")
    return event


def _expiries_within_stripe_window(expires_at: datetime, now: datetime) -> list[int]:
    """The ``expires_at`` to send (first) and, when it had to be clamped, the one an attempt in the previous
    grid cell sent.  Inside Stripe's window the wanted expiry is sent as it is (it comes from the appointment's
    hold, the same on every retry); outside it the clamp depends on the clock, so it is rounded to a 10-minute
    grid that a retry within the same cell reproduces exactly, and the previous cell's value is the fallback."""
    wanted = int((expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)).timestamp())
    low, high = int((now + _MIN_EXPIRY).timestamp()), int((now + _MAX_EXPIRY).timestamp())
    if low <= wanted <= high:
        return [wanted]
    # Below the window round up (still at least the minimum ahead); above it round down.
    first = -(-low // _EXPIRY_GRID_S) * _EXPIRY_GRID_S if wanted < low else high // _EXPIRY_GRID_S * _EXPIRY_GRID_S
    return [first, first - _EXPIRY_GRID_S]


def _in_flight(exc: stripe.StripeError) -> bool:
    """Stripe's 409 ``idempotency_error``: a request with the same Idempotency-Key is still being processed (two
    settlements of one deposit at once).  Its outcome is not known yet: a retry with the key is answered with it.
    (The SDK raises a plain ``APIError`` for it — only a 400 becomes ``IdempotencyError`` — so the body's type is
    what tells.)"""
    return exc.http_status == 409 and getattr(exc.error, "type", None) == "idempotency_error"


def _classify(exc: stripe.StripeError, *, what: str, ref: object) -> PaymentError:
    status = exc.http_status
    retryable = (
        isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError)
        or (status is not None and (status == 429 or status >= 500))
        or (isinstance(exc, stripe.APIError) and status is None)
        or exc.code == "lock_timeout"
        or _in_flight(exc)
    )
    log.warning(
        "stripe %s failed ref=%s status=%s type=%s code=%s request_id=%s retryable=%s",
        what,
        ref,
        status,
        type(exc).__name__,
        exc.code,
        exc.request_id,
        retryable,
    )
    return PaymentError(f"stripe {what} failed: {type(exc).__name__} (HTTP {status})", retryable=retryable)
