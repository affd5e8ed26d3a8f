"""Check in, complete, no-show, late cancel: one transaction each, which also records what follows.

The rule (allowed or not, and what follows) is ``domain.visits.decide``; here it is applied to the row, locked:
- the status and the day's facts (check-in time, outcome time and who recorded it, what was done, the amount
  charged, the service actually given) are written with a guard on the status read, so two desks marking the
  same visit at once make one change and the second sees a repeat;
- queued reminders are withdrawn (``worker.automations.withdraw_appointment_messages``);
- a paid deposit is marked kept, or due for refund (the ``refund_deposit`` actor refunds it; the scheduled
  ``retry_deposit_refunds`` sweep covers a lost enqueue);
- a fee the clinic's policy names, when the patient saved a card for it at booking, is recorded as due
  (``fee_status = 'due'``): the ``charge_visit_fee`` actor charges it after the commit, and the end-of-day job
  re-enqueues a due fee whose message was lost;
- the texts that follow a visit are the clinic's automations (aftercare, review request, no-show follow-up in
  ``worker/automations.py``): the new status is what makes them due at their moment; nothing is sent from here.
Follow-up actors are enqueued by the caller after the commit (:class:`AfterCommit`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database
from domain.deposits import PAID, held_cents
from domain.visits import (
    AUTOMATIONS,
    FollowUp,
    Transition,
    VisitFacts,
    VisitPolicy,
    decide,
)
from worker.automations import follow_up_delay, load_automations, withdraw_appointment_messages
from worker.visits.cards import SAVED_CARD

log = logging.getLogger(__name__)

# The actors a transition's follow-ups are, by name, with their queues (enqueued after the commit).
FOLLOW_UP_ACTORS: dict[str, tuple[str, str]] = {
    "fee": ("charge_visit_fee", "scheduled"),
    "refund": ("refund_deposit", "scheduled"),
    "calendar": ("sync_calendar_event", "scheduled"),
}

_LOCK = f"""
SELECT a.id, a.kind, a.status, a.starts_at, a.ends_at, a.client_id, a.fee_status,
       pay.id AS payment_id, coalesce(pay.amount_cents, 0) AS deposit_amount_cents,
       coalesce(pay.refunded_cents, 0) AS deposit_refunded_cents, c.policies, c.timezone
FROM appointments a JOIN clinics c ON c.id = a.clinic_id
LEFT JOIN LATERAL (SELECT id, amount_cents, refunded_cents FROM payments WHERE appointment_id = a.id
                   AND status = '{PAID}' ORDER BY id LIMIT 1) pay ON true
WHERE a.id = :id FOR UPDATE OF a
"""
_SERVICE = "SELECT id FROM services WHERE slug = :slug"
_APPLY = """
UPDATE appointments SET
    status = CAST(:to AS text), updated_at = now(),
    checked_in_at = CASE WHEN CAST(:to AS text) = 'checked_in' THEN CAST(:now AS timestamptz) ELSE checked_in_at END,
    outcome_at = CASE WHEN CAST(:to AS text) <> 'checked_in' THEN CAST(:now AS timestamptz) ELSE outcome_at END,
    outcome_by = CASE WHEN CAST(:to AS text) <> 'checked_in' THEN CAST(:by AS text) ELSE outcome_by END,
    amount_charged_cents = coalesce(CAST(:amount AS integer), amount_charged_cents),
    visit_summary = CASE WHEN CAST(:summary AS text) <> '' THEN CAST(:summary AS text) ELSE visit_summary END,
    service_id = coalesce(CAST(:service_id AS bigint), service_id),
    cancelled_at = CASE WHEN CAST(:to AS text) = 'late_cancelled' THEN CAST(:now AS timestamptz) ELSE cancelled_at END,
    cancel_reason = CASE WHEN CAST(:to AS text) = 'late_cancelled' THEN CAST(:reason AS text) ELSE cancel_reason END,
    calendar_sync = CASE WHEN CAST(:calendar AS boolean) THEN 'pending' ELSE calendar_sync END,
    fee_kind = coalesce(CAST(:fee_kind AS varchar), fee_kind),
    fee_cents = coalesce(CAST(:fee_cents AS integer), fee_cents),
    fee_status = coalesce(CAST(:fee_status AS varchar), fee_status),
    notes = CASE WHEN CAST(:note AS text) = '' THEN notes WHEN notes = '' THEN CAST(:note AS text)
                 ELSE notes || E'\\n' || CAST(:note AS text) END
WHERE id = :id AND status = CAST(:from AS text)
RETURNING id
"""
_DEPOSIT = f"UPDATE payments SET status = :to, updated_at = now() WHERE id = :id AND status = '{PAID}'"


class VisitRefused(Exception):
    """The step is not allowed now (one line for staff)."""


@dataclass(frozen=True)
class CompletionDetails:
    """What a completed visit came to: the amount charged (spend segments), what was done, the service given."""

    amount_charged_cents: int | None = None
    summary: str = ""
    service_slug: str | None = None


@dataclass
class VisitResult:
    appointment_id: int
    transition: Transition
    status: str
    changed: bool  # False: a repeat, nothing changed
    notes: list[str] = field(default_factory=list)
    due: dict[str, datetime] = field(default_factory=dict)  # automation kind -> when its text falls due (UTC)
    fee: bool = False  # charge_visit_fee to enqueue
    refund: bool = False  # refund_deposit to enqueue
    calendar: bool = False  # sync_calendar_event to enqueue

    def follow_ups(self) -> list[str]:
        """The follow-up actors to enqueue after the commit (``FOLLOW_UP_ACTORS`` keys)."""
        return [
            kind for kind, wanted in (("fee", self.fee), ("refund", self.refund), ("calendar", self.calendar)) if wanted
        ]


def apply_transition(
    session: Session,
    clinic_id: int,
    appointment_id: int,
    transition: Transition,
    now: datetime,
    *,
    by: str,
    details: CompletionDetails | None = None,
    reason: str = "",
) -> VisitResult:
    """Apply one day-of step inside the caller's transaction (a tenant scope); raises :class:`VisitRefused`."""
    row = session.execute(text(_LOCK), {"id": appointment_id}).mappings().one_or_none()
    if row is None:
        raise VisitRefused(f"no appointment {appointment_id} at this clinic")
    policy = VisitPolicy.from_policies(row["policies"])
    card = session.execute(text(SAVED_CARD), {"appointment_id": appointment_id}).mappings().first()
    facts = VisitFacts(
        status=row["status"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        kind=row["kind"],
        # What is still held nets a fee: a partial refund in the Stripe dashboard gave the rest back already.
        deposit_paid_cents=held_cents(int(row["deposit_amount_cents"]), int(row["deposit_refunded_cents"])),
        card_saved=card is not None,
    )
    decision = decide(transition, facts, policy, now)
    if not decision.allowed:
        raise VisitRefused(decision.reason)
    extra = {"clinic_id": clinic_id, "appointment_id": appointment_id, "transition": transition.value}
    if decision.repeat:
        # Nothing changes; a fee still due (its message lost) is handed to the charge actor again.
        return VisitResult(
            appointment_id, transition, row["status"], False, [decision.reason], fee=row["fee_status"] == "due"
        )
    details = details or CompletionDetails()
    service_id = None
    if transition is Transition.COMPLETE and details.service_slug:
        service_id = session.execute(text(_SERVICE), {"slug": details.service_slug}).scalar_one_or_none()
        if service_id is None:
            raise VisitRefused(f"no service {details.service_slug!r} at this clinic")
    complete = transition is Transition.COMPLETE
    charge = decision.has(FollowUp.CHARGE_FEE)
    updated = session.execute(
        text(_APPLY),
        {
            "to": decision.to_status,
            "from": row["status"],
            "id": appointment_id,
            "now": now,
            "by": by[:64],
            "amount": details.amount_charged_cents if complete else None,
            "summary": details.summary.strip() if complete else "",
            "service_id": service_id,
            "reason": reason.strip() or "late cancellation",
            "calendar": decision.has(FollowUp.CALENDAR),
            "fee_kind": decision.fee_kind if charge else None,
            "fee_cents": decision.fee_cents if charge else None,
            "fee_status": "due" if charge else None,
            "note": "; ".join(decision.notes),
        },
    ).first()
    if updated is None:  # cannot happen under the row lock; never leave a half-applied step
        raise VisitRefused("the appointment changed meanwhile; try again")
    if decision.has(FollowUp.WITHDRAW_REMINDERS):
        withdraw_appointment_messages(session, clinic_id, appointment_id)
    if row["payment_id"] is not None and decision.has(FollowUp.KEEP_DEPOSIT):
        session.execute(text(_DEPOSIT), {"to": "kept", "id": row["payment_id"]})
    refund = row["payment_id"] is not None and decision.has(FollowUp.REFUND_DEPOSIT)
    if refund:
        session.execute(text(_DEPOSIT), {"to": "refund_due", "id": row["payment_id"]})
    result = VisitResult(
        appointment_id,
        transition,
        decision.to_status,
        True,
        list(decision.notes),
        due=_due_times(session, clinic_id, decision.follow_ups, row["ends_at"]),
        fee=charge,
        refund=refund,
        calendar=decision.has(FollowUp.CALENDAR),
    )
    log.info("visit step recorded", extra={**extra, "status": decision.to_status, "fee": charge})
    return result


def _due_times(
    session: Session, clinic_id: int, follow_ups: tuple[FollowUp, ...], ends_at: datetime
) -> dict[str, datetime]:
    """When the clinic's enabled follow-up automations for this step fall due (they go out then, within the
    patient's allowed hours and consent, through ``worker/automations.py``)."""
    kinds = {AUTOMATIONS[f] for f in follow_ups if f in AUTOMATIONS}
    if not kinds:
        return {}
    due: dict[str, datetime] = {}
    for spec in load_automations(session, clinic_id):
        delay = follow_up_delay(spec) if spec.kind in kinds else None
        if delay is not None:
            due[spec.kind] = ends_at + delay
    return due


FollowUpSink = Callable[[str, int, int], None]  # (FOLLOW_UP_ACTORS key, clinic_id, appointment_id)


def record_visit(
    database: Database,
    clinic_id: int,
    appointment_id: int,
    transition: Transition,
    now: datetime,
    follow_up: FollowUpSink,
    **kwargs: Any,
) -> VisitResult:
    """:func:`apply_transition` in its own transaction, then the follow-up actors (after the commit)."""
    with database.tenant_scope(clinic_id) as session:
        result = apply_transition(session, clinic_id, appointment_id, transition, now, **kwargs)
    for kind in result.follow_ups():
        follow_up(kind, clinic_id, appointment_id)
    return result
