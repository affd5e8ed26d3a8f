"""A visit's fee (no-show, late cancellation) charged to the card the patient saved at booking.

At most one charge per visit, across retries and crashes:
- the transition recorded the fee as ``due`` in its transaction; only a ``due`` fee is charged, and the result is
  recorded with a guard on ``due``, so a duplicate message finds it settled and calls nobody;
- the Stripe request carries the Idempotency-Key ``visit-fee:{kind}:{appointment_id}``
  (``domain.visits.fee_idempotency_key``): a retry after a timeout or a crash between Stripe's answer and our
  commit is answered with the first charge, never a second one;
- a retryable failure raises (the ``charge_visit_fee`` actor retries with backoff, same key); a refusal (declined,
  no saved card) is recorded as ``failed`` with the reason, and a bank asking for the patient as
  ``requires_action`` — staff follow up with the patient; nothing retries those.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from db.engine import Database
from domain.ports import OffSessionCharge, PaymentError, Payments
from domain.visits import fee_idempotency_key
from worker.visits.cards import SAVED_CARD

log = logging.getLogger(__name__)

# A fee's status once the charge ran (``due`` before; the check constraint on appointments names them all).
FEE_CHARGED = "charged"
FEE_FAILED = "failed"  # refused, or no saved card: staff collect it
FEE_REQUIRES_ACTION = "requires_action"  # the bank wants the patient present: staff follow up
# Nothing retries these: they are on staff's attention list (``medspa staff attention``).
FEE_NEEDS_STAFF: tuple[str, ...] = (FEE_FAILED, FEE_REQUIRES_ACTION)

_FEE = """
SELECT a.fee_status, a.fee_cents, a.fee_kind, coalesce(s.name, 'appointment') AS service, c.name AS clinic,
       coalesce(c.policies->>'currency', 'usd') AS currency
FROM appointments a JOIN clinics c ON c.id = a.clinic_id LEFT JOIN services s ON s.id = a.service_id
WHERE a.id = :id
"""
_SETTLE = """
UPDATE appointments SET fee_status = :status, fee_payment_intent_id = coalesce(:intent, fee_payment_intent_id),
                        fee_error = :error, updated_at = now()
WHERE id = :id AND fee_status = 'due'
"""
# Fees recorded as due whose charge never ran (its message lost): older than a few minutes, for a re-enqueue.
_STALE_DUE = """
SELECT id FROM appointments WHERE fee_status = 'due' AND updated_at < now() - make_interval(secs => :settled)
ORDER BY updated_at LIMIT :limit
"""


def charge_fee(database: Database, payments: Payments, clinic_id: int, appointment_id: int) -> str:
    """Charge the visit's due fee; returns 'charged' | 'requires_action' | 'failed' | 'nothing' (not due).
    Raises :class:`PaymentError` when a retry may succeed (the caller retries with the same key)."""
    extra = {"clinic_id": clinic_id, "appointment_id": appointment_id}
    with database.tenant_scope(clinic_id) as session:
        fee = session.execute(text(_FEE), {"id": appointment_id}).mappings().one_or_none()
        card = session.execute(text(SAVED_CARD), {"appointment_id": appointment_id}).mappings().first()
    if fee is None or fee["fee_status"] != "due":
        return "nothing"
    if card is None:
        _settle(database, clinic_id, appointment_id, FEE_FAILED, None, "no saved card to charge")
        log.error("visit fee due without a saved card; staff collect it", extra=extra)
        return "failed"
    kind = str(fee["fee_kind"])
    try:
        result = payments.charge_off_session(
            OffSessionCharge(
                clinic_id=clinic_id,
                appointment_id=appointment_id,
                amount_cents=int(fee["fee_cents"]),
                currency=str(card["currency"] or fee["currency"]),
                customer_id=str(card["customer_id"]),
                payment_method_id=str(card["payment_method_id"]),
                description=f"{kind.replace('_', '-')} fee: {fee['service']} at {fee['clinic']}",
                idempotency_key=fee_idempotency_key(appointment_id, kind),
                metadata={"fee": kind},
            )
        )
    except PaymentError as exc:
        if exc.retryable:
            log.warning("visit fee charge failed; will retry", extra=extra)
            raise
        _settle(database, clinic_id, appointment_id, FEE_FAILED, None, str(exc)[:300])
        log.error("visit fee refused by the provider; staff collect it", extra=extra)
        return "failed"
    status = FEE_REQUIRES_ACTION if result.status == FEE_REQUIRES_ACTION else FEE_CHARGED
    _settle(database, clinic_id, appointment_id, status, result.payment_intent_id, "")
    log.info("visit fee charged", extra={**extra, "status": status})
    return status


def _settle(
    database: Database, clinic_id: int, appointment_id: int, status: str, intent: str | None, error: str
) -> None:
    with database.tenant_scope(clinic_id) as session:
        session.execute(text(_SETTLE), {"status": status, "intent": intent, "error": error, "id": appointment_id})


def stale_due_fees(database: Database, clinic_id: int, *, settled_s: int = 300, limit: int = 100) -> list[int]:
    """Fees due for longer than ``settled_s``: their charge message may be lost (the end-of-day job re-enqueues)."""
    with database.tenant_scope(clinic_id) as session:
        return [int(r) for r in session.execute(text(_STALE_DUE), {"settled": settled_s, "limit": limit}).scalars()]
