"""The card a patient saves at deposit time for the clinic's no-show / late-cancel fees.

The deposit's Checkout Session asks Stripe to save the card for off-session use (``setup_future_usage``), shows
the clinic's wording (``domain.visits.VisitPolicy.card_terms``) and creates a Customer.  Two webhook events say
what was saved, in either order:
- ``checkout.session.completed``: the patient paid and so agreed — the Customer and the wording are recorded on
  the payment, with the moment (``card_saved_at``);
- ``payment_intent.succeeded`` (of a PaymentIntent set up for future use): the payment method.
A fee is charged only when both are recorded (:data:`SAVED_CARD`).  Both run inside the payment event's
transaction (``worker.payments_flow.apply_payment_event``), one after the other for the same appointment: Stripe
does not order its events, two workers may apply the pair at the same moment, and the PaymentIntent's handler reads
the payment twice (by intent, then by appointment) — a checkout completion committing between those reads made both
miss and the card was never saved.  So the PaymentIntent's handler first takes the appointment's row lock, which
the checkout's handler holds while it records the intent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# The appointment's saved card: a payment whose checkout saved it, with the patient's agreement recorded.
SAVED_CARD = """
    SELECT p.customer_id, p.payment_method_id, p.currency FROM payments p
    WHERE p.appointment_id = :appointment_id AND p.customer_id IS NOT NULL AND p.payment_method_id IS NOT NULL
      AND p.card_saved_at IS NOT NULL
    ORDER BY p.id DESC LIMIT 1
"""
_RECORD_AGREEMENT = """
    UPDATE payments SET customer_id = :customer, card_terms = :terms,
                        card_saved_at = coalesce(card_saved_at, :now), updated_at = now()
    WHERE id = :id
"""
_RECORD_METHOD_BY_INTENT = """
    UPDATE payments SET payment_method_id = :method, customer_id = coalesce(customer_id, :customer), updated_at = now()
    WHERE payment_intent_id = :intent RETURNING id
"""
# Taken first by ``payment_intent.succeeded``: the lock ``checkout.session.completed`` holds on the appointment
# (``worker.payments_flow._lock_appointment``) from before it records the intent on the payment until it commits.
_LOCK_APPOINTMENT = "SELECT id FROM appointments WHERE id = :id FOR UPDATE"
# The event came before checkout.session.completed: the appointment's newest checkout without an intent yet.
_RECORD_METHOD_BY_APPOINTMENT = """
    UPDATE payments SET payment_method_id = :method, customer_id = coalesce(customer_id, :customer),
                        payment_intent_id = :intent, updated_at = now()
    WHERE id = (SELECT id FROM payments WHERE appointment_id = :appointment_id AND payment_intent_id IS NULL
                ORDER BY id DESC LIMIT 1)
    RETURNING id
"""


def checkout_terms(obj: dict[str, Any]) -> str:
    """The wording a completed Checkout Session showed next to the pay button (empty: no card was saved)."""
    return str(((obj.get("custom_text") or {}).get("submit") or {}).get("message") or "")


def record_checkout_agreement(session: Session, payment_id: int, obj: dict[str, Any], now: datetime) -> bool:
    """``checkout.session.completed`` of a checkout that saved the card: record the Customer and the agreement."""
    customer, terms = obj.get("customer"), checkout_terms(obj)
    if not customer or not terms:
        return False
    session.execute(
        text(_RECORD_AGREEMENT), {"customer": str(customer)[:255], "terms": terms, "now": now, "id": payment_id}
    )
    return True


def record_saved_method(session: Session, obj: dict[str, Any]) -> bool:
    """``payment_intent.succeeded``: a deposit whose card was set up for off-session use names its payment method.
    Other PaymentIntents (our own off-session fee charges among them) are not about a saved card."""
    if obj.get("setup_future_usage") != "off_session" or not obj.get("payment_method"):
        return False
    method = obj["payment_method"]
    method_id = str(method.get("id") if isinstance(method, dict) else method)[:255]
    params = {
        "method": method_id,
        "customer": str(obj["customer"])[:255] if obj.get("customer") else None,
        "intent": str(obj.get("id") or "")[:255],
    }
    try:
        appointment_id: int | None = int((obj.get("metadata") or {})["appointment_id"])
    except (KeyError, TypeError, ValueError):
        appointment_id = None  # not a deposit of ours: only a payment already holding this intent can match
    if appointment_id is not None:
        # Waits for a checkout completion of this appointment in flight; the reads below then see what it committed.
        session.execute(text(_LOCK_APPOINTMENT), {"id": appointment_id})
    if session.execute(text(_RECORD_METHOD_BY_INTENT), params).first() is not None:
        return True
    if appointment_id is None:
        return False
    found = session.execute(text(_RECORD_METHOD_BY_APPOINTMENT), {**params, "appointment_id": appointment_id})
    return found.first() is not None
