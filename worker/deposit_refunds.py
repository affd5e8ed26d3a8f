"""Settling a deposit when its appointment is gone: refund it or keep it, per the clinic's policy
(``domain.appointments``: the one rule) — the agent's cancel, the staff commands and the ``refund_deposit`` actor
all come here — and the sweep's list of deposits not settled yet.  Refunds carry the idempotency key
``refund:{appointment_id}``, so a retried refund is one refund.  What is refunded or kept is what the clinic still
holds (``domain.deposits.held_cents``): a partial refund made in the Stripe dashboard is not refunded twice."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import text

from db.engine import Database, sql_list
from domain import appointments as appointment_rules
from domain import deposits
from domain.appointments import CancellationPolicy
from domain.ports import PaymentError, Payments
from worker.container import Container

log = logging.getLogger(__name__)


def deposit_decision(policies: dict[str, Any], starts_at: datetime, cancelled_at: datetime | None) -> str:
    """Refund or keep a paid deposit when the appointment is cancelled at ``cancelled_at``: the clinic's
    ``policies`` read by ``domain.appointments.deposit_decision`` (the one rule)."""
    return appointment_rules.deposit_decision(CancellationPolicy.from_policies(policies), starts_at, cancelled_at)


def refund_deposit_for(container: Container, clinic_id: int, appointment_id: int) -> str:
    """:func:`settle_deposit` with the container's database and payments (the ``refund_deposit`` actor)."""
    return settle_deposit(container.database, container.payments, clinic_id, appointment_id)


def settle_deposit(database: Database, payments: Payments, clinic_id: int, appointment_id: int) -> str:
    """Refund (or keep, per policy) the deposit of a cancelled or released appointment.

    Returns 'refunded' | 'kept' | 'nothing' | 'live' | 'failed'.  A payment
    marked 'refund_due' (it arrived for a slot we no longer held) is refunded
    whatever the policy.  Raises :class:`PaymentError` when the refund is
    worth retrying: the caller's retry reuses the idempotency key
    ``refund:{appointment_id}``, so retries are one refund.  A refusal marks
    the payment 'refund_failed' (staff refund by hand; the sweep stops).
    """
    with database.tenant_scope(clinic_id) as session:
        row = (
            session.execute(
                text(
                    f"""SELECT a.status, a.starts_at, a.cancelled_at, c.policies, p.id AS payment_id,
                          p.status AS payment_status, p.payment_intent_id, p.amount_cents, p.refunded_cents
                   FROM appointments a JOIN clinics c ON c.id = a.clinic_id
                   LEFT JOIN LATERAL (SELECT id, status, payment_intent_id, amount_cents, refunded_cents
                                      FROM payments
                                      WHERE appointment_id = a.id
                                        AND status IN {sql_list(deposits.SETTLEABLE_STATUSES)}
                                      ORDER BY id LIMIT 1) p ON true
                   WHERE a.id = :id AND a.clinic_id = :c"""
                ),
                {"id": appointment_id, "c": clinic_id},
            )
            .mappings()
            .one_or_none()
        )
    if row is None or row["payment_id"] is None:
        return "nothing"
    due = row["payment_status"] == deposits.REFUND_DUE
    if appointment_rules.is_live(row["status"]) and not due:
        return "live"  # the appointment stands: its deposit is applied to the treatment
    already = int(row["refunded_cents"] or 0)
    held = deposits.held_cents(int(row["amount_cents"] or 0), already)
    decision = appointment_rules.settle_deposit(
        CancellationPolicy.from_policies(row["policies"] or {}),
        row["status"],
        row["starts_at"],
        row["cancelled_at"],
        paid_cents=held,
        refund_due=due,
    )
    extra = {"clinic_id": clinic_id, "appointment_id": appointment_id}
    if decision == "none":  # refunded in full already (refunds made elsewhere reached the whole amount)
        _set_payment_status(database, clinic_id, row["payment_id"], deposits.REFUNDED)
        log.info("deposit already refunded in full", extra=extra)
        return "refunded"
    if decision == "keep":
        _set_payment_status(database, clinic_id, row["payment_id"], deposits.KEPT)
        log.info("deposit kept per policy", extra=extra)
        return "kept"
    if not row["payment_intent_id"]:
        _set_payment_status(database, clinic_id, row["payment_id"], deposits.REFUND_FAILED)
        log.error("deposit to refund has no payment intent; refund by hand", extra=extra)
        return "failed"
    try:
        # The key stays the appointment's: however often this runs, and whatever ran beside it, one refund.
        refund = payments.refund(str(row["payment_intent_id"]), held, f"refund:{appointment_id}")
    except PaymentError as exc:
        if exc.retryable:
            log.warning("deposit refund failed; will retry", extra=extra)
            raise
        _set_payment_status(database, clinic_id, row["payment_id"], deposits.REFUND_FAILED)
        log.error("deposit refund refused by the provider; refund by hand", extra=extra)
        return "failed"
    with database.tenant_scope(clinic_id) as session:
        # The money is back with the patient: that is recorded even over 'refund_failed', which a concurrent
        # settlement of the same deposit may have written while this one's request was in flight.
        session.execute(
            text(
                f"""UPDATE payments SET status = :refunded, refund_id = :r, updated_at = now(),
                          refunded_cents = greatest(refunded_cents, :total)
                   WHERE id = :id AND status IN {sql_list(deposits.REFUND_RECORDABLE_STATUSES)}"""
            ),
            {
                "refunded": deposits.REFUNDED,
                "r": refund.refund_id,
                "total": already + refund.amount_cents,
                "id": row["payment_id"],
            },
        )
    log.info("deposit refunded", extra=extra)
    return "refunded"


def _set_payment_status(database: Database, clinic_id: int, payment_id: int, status: str) -> None:
    with database.tenant_scope(clinic_id) as session:
        session.execute(
            text(
                f"""UPDATE payments SET status = :s, updated_at = now()
                   WHERE id = :id AND status IN {sql_list(deposits.SETTLEABLE_STATUSES)}"""
            ),
            {"s": status, "id": payment_id},
        )


def unrefunded_cancellations(
    container: Container, clinic_id: int, *, settled_s: int = 120, limit: int = 100
) -> list[int]:
    """Appointments holding a deposit that should be refunded or kept but is neither yet: 'refund_due'
    payments, and 'paid' ones of cancelled or released appointments (the cancel tool's inline refund failed,
    or a crash came first).  Older than ``settled_s`` so the normal path goes first."""
    with container.database.tenant_scope(clinic_id) as session:
        return [
            int(r)
            for r in session.execute(
                text(
                    f"""SELECT DISTINCT a.id FROM appointments a JOIN payments p ON p.appointment_id = a.id
                       WHERE (p.status = '{deposits.REFUND_DUE}'
                              OR (p.status = '{deposits.PAID}'
                                  AND a.status IN {sql_list(appointment_rules.RELEASED_STATUSES)}))
                         AND p.updated_at < now() - make_interval(secs => :settled)
                       LIMIT :limit"""
                ),
                {"settled": settled_s, "limit": limit},
            ).scalars()
        ]
