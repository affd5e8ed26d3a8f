"""Deposits after the booking: what a Stripe (or local test-mode) payment event does.

Why it is shaped this way:
- The webhook only verified and recorded the event (inbox row, keyed by the
  event id).  Here, in one transaction, the event is claimed in
  ``processed_webhook_events`` (unique per provider and event id), the payment
  and appointment rows are locked (appointment first, everywhere, so the hold
  expiry job cannot deadlock with us), updated, the patient's text is written
  to the outbox with a per-appointment dedupe key, and the inbox row is marked
  processed.  Follow-ups (send, calendar sync, refund) are enqueued only after
  that commit.  Running it twice, or for a second delivery of the same
  payment, changes nothing and sends nothing.
- Events arrive out of order.  Each handler looks at the state it finds:
  'expired' after 'paid' does nothing; a payment that completes after the hold
  was released re-takes the slot if it is still free (the exclusion
  constraint decides) and otherwise is refunded, and the patient is told.
- Holds also end by time: :func:`expire_due_holds` (scheduled) releases
  appointments whose ``hold_expires_at`` passed, by ``container.clock``.
- Refunds go through the Payments port with the idempotency key
  ``refund:{appointment_id}``, so the cancel tool, this module and retries
  can never refund twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg.errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain import appointments as appointment_rules
from domain import deposits
from domain.agent_state import AgentEvent, AgentState, next_state
from domain.prompt import local_label
from domain.replies import shape_sms_reply
from worker import staff_takeover
from worker.automations import withdraw_appointment_messages
from worker.container import Container
from worker.handoff_notify import INSERT_ALERT, alert_params
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows, write_history_message
from worker.sending import enqueue
from worker.visits import cards

log = logging.getLogger(__name__)

SendOutbox = Callable[[int, list[int]], None]  # (clinic_id, outbox ids), called after commit
FollowUp = Callable[[str, int, int], None]  # (kind: "calendar" | "refund", clinic_id, appointment_id)

WEBHOOK_PROVIDER = "stripe"  # processed_webhook_events.provider for Stripe and local test-mode events
# Said to staff (the conversation's handoff reason) when a checkout paid something other than the deposit asked.
REVIEW_REASON = "deposit paid does not match the amount asked; check the payment before confirming"


@dataclass
class PaymentOutcome:
    """What one event did (tests and logs read it; nothing depends on it for correctness)."""

    # confirmed | rebooked | refund_late | review | released | noted | refunded | duplicate | ignored | missing
    action: str
    appointment_id: int | None = None
    outbox_ids: list[int] = field(default_factory=list)
    calendar: bool = False
    refund: bool = False


# The actor each follow-up is, by name (a flow never imports an actor module).
FOLLOW_UP_ACTORS = {"calendar": "sync_calendar_event", "refund": "refund_deposit"}


def enqueue_follow_up(kind: str, clinic_id: int, appointment_id: int) -> None:
    """The production follow-up, called after the commit: the actor for ``kind``, enqueued by name."""
    enqueue(FOLLOW_UP_ACTORS[kind], clinic_id, appointment_id)


# ------------------------------------------------------------------ webhook events
def apply_payment_event(
    container: Container,
    clinic_id: int,
    inbox_id: int,
    send_outbox_fn: SendOutbox,
    *,
    follow_up: FollowUp = enqueue_follow_up,
) -> PaymentOutcome:
    """Apply the payment event recorded as inbox row ``inbox_id``.  Idempotent."""
    _, routing = container.clinic(clinic_id)
    now = container.clock.now()
    with container.database.tenant_scope(clinic_id) as session:
        event = (
            session.execute(
                text(
                    """SELECT id, source, provider_event_id, payload, status, trace_id FROM inbox_events
                   WHERE id = :id FOR UPDATE"""
                ),
                {"id": inbox_id},
            )
            .mappings()
            .one_or_none()
        )
        if event is None:
            return PaymentOutcome("missing")
        if event["status"] != "received":
            return PaymentOutcome("duplicate")
        payload = event["payload"] or {}
        event_type = str(payload.get("type", ""))
        obj = payload.get("object") or {}
        claimed = session.execute(
            text(
                """INSERT INTO processed_webhook_events (clinic_id, provider, event_id, event_type)
                   VALUES (:c, :p, :e, :t) ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"""
            ),
            {"c": clinic_id, "p": WEBHOOK_PROVIDER, "e": event["provider_event_id"], "t": event_type[:100]},
        ).scalar_one_or_none()
        if claimed is None:
            outcome = PaymentOutcome("duplicate")
        elif event_type == "checkout.session.completed":
            outcome = _session_completed(session, clinic_id, obj, now, routing, event["trace_id"])
        elif event_type == "checkout.session.expired":
            outcome = _session_expired(session, clinic_id, obj, now, routing, event["trace_id"])
        elif event_type == "charge.refunded":
            outcome = _charge_refunded(session, obj)
        elif event_type == "payment_intent.succeeded":  # a deposit's card saved for the clinic's fees
            outcome = PaymentOutcome("noted" if cards.record_saved_method(session, obj) else "ignored")
        else:
            outcome = PaymentOutcome("ignored")
        session.execute(
            text(
                """UPDATE inbox_events SET status = 'processed', processed_at = now(), attempts = attempts + 1,
                          last_error = :note
                   WHERE id = :id"""
            ),
            {"id": inbox_id, "note": "" if outcome.action not in ("ignored", "missing") else outcome.action},
        )
    log.info(
        "payment event applied",
        extra={
            "clinic_id": clinic_id,
            "inbox_id": inbox_id,
            "event_type": event_type,
            "action": outcome.action,
            "appointment_id": outcome.appointment_id,
        },
    )
    _after_commit(clinic_id, outcome, send_outbox_fn, follow_up)
    return outcome


def _after_commit(clinic_id: int, outcome: PaymentOutcome, send: SendOutbox, follow_up: FollowUp) -> None:
    if outcome.outbox_ids:
        send(clinic_id, outcome.outbox_ids)
    if outcome.appointment_id is not None and outcome.calendar:
        follow_up("calendar", clinic_id, outcome.appointment_id)
    if outcome.appointment_id is not None and outcome.refund:
        follow_up("refund", clinic_id, outcome.appointment_id)


def _appointment_for_session(session: Session, clinic_id: int, obj: dict[str, Any]) -> int | None:
    session_id = str(obj.get("id") or "")
    found = session.execute(
        text("SELECT appointment_id FROM payments WHERE checkout_session_id = :sid"), {"sid": session_id}
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    try:
        return int((obj.get("metadata") or {})["appointment_id"])
    except (KeyError, TypeError, ValueError):
        return None


def _lock_appointment(session: Session, clinic_id: int, appointment_id: int) -> dict[str, Any] | None:
    row = (
        session.execute(
            text(
                """SELECT a.id, a.status, a.starts_at, a.client_id, a.conversation_id, a.deposit_cents,
                      a.hold_expires_at, a.calendar_event_id, coalesce(s.name, 'appointment') AS service_name,
                      p.name AS provider_name, cl.phone_e164, cv.channel, c.name AS clinic_name, c.timezone
               FROM appointments a JOIN providers p ON p.id = a.provider_id
               JOIN clinics c ON c.id = a.clinic_id
               LEFT JOIN services s ON s.id = a.service_id
               LEFT JOIN clients cl ON cl.id = a.client_id
               LEFT JOIN conversations cv ON cv.id = a.conversation_id
               WHERE a.id = :id AND a.clinic_id = :c FOR UPDATE OF a"""
            ),
            {"id": appointment_id, "c": clinic_id},
        )
        .mappings()
        .one_or_none()
    )
    return dict(row) if row else None


def _lock_payment(
    session: Session, clinic_id: int, appt: dict[str, Any], obj: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The payments row of this checkout session, created from the event if we never stored it (a crash
    between creating the session and recording it)."""
    session_id = str(obj.get("id") or "")
    row = (
        session.execute(
            text(
                "SELECT id, status, amount_cents, currency, payment_intent_id FROM payments "
                "WHERE checkout_session_id = :sid FOR UPDATE"
            ),
            {"sid": session_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is not None:
        return dict(row)
    expires = obj.get("expires_at")
    inserted = (
        session.execute(
            text(
                """INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
                   amount_cents, currency, status, url, expires_at)
               VALUES (:c, :a, :client, :prov, :sid, :amt, :cur, 'pending', :url, :exp)
               RETURNING id, status, amount_cents, currency, payment_intent_id"""
            ),
            {
                "c": clinic_id,
                "a": appt["id"],
                "client": appt["client_id"],
                "prov": "local" if session_id.startswith("cs_local_") else "stripe",
                "sid": session_id,
                "amt": int(obj.get("amount_total") or appt["deposit_cents"] or 0),
                "cur": str(obj.get("currency") or "usd")[:3],
                "url": str(obj.get("url") or ""),
                "exp": datetime.fromtimestamp(int(expires), UTC) if expires else now,
            },
        )
        .mappings()
        .one()
    )
    log.warning(
        "payment event for an unrecorded checkout session; recorded it",
        extra={"clinic_id": clinic_id, "appointment_id": appt["id"]},
    )
    return dict(inserted)


def _session_completed(
    session: Session, clinic_id: int, obj: dict[str, Any], now: datetime, routing: dict[str, Any], trace: str
) -> PaymentOutcome:
    if obj.get("payment_status") not in ("paid", "no_payment_required"):
        return PaymentOutcome("ignored")  # async methods complete unpaid; only card deposits are offered
    appointment_id = _appointment_for_session(session, clinic_id, obj)
    appt = _lock_appointment(session, clinic_id, appointment_id) if appointment_id is not None else None
    if appt is None:
        log.warning("payment for an unknown appointment", extra={"clinic_id": clinic_id})
        return PaymentOutcome("ignored")
    payment = _lock_payment(session, clinic_id, appt, obj, now)
    outcome = PaymentOutcome("confirmed", appointment_id=appt["id"])
    if payment["status"] in deposits.RECEIVED_STATUSES:
        outcome.action = "duplicate"
        return outcome
    paid_cents, paid_currency = obj.get("amount_total"), obj.get("currency")
    if not deposits.checkout_matches(
        int(payment["amount_cents"]),
        str(payment["currency"]),
        int(paid_cents) if paid_cents is not None else None,
        str(paid_currency) if paid_currency else None,
    ):
        return _hold_for_review(session, clinic_id, appt, payment, obj, outcome)
    session.execute(
        text(
            """UPDATE payments SET status = 'paid', payment_intent_id = coalesce(:pi, payment_intent_id),
                      updated_at = now() WHERE id = :id"""
        ),
        {"pi": obj.get("payment_intent"), "id": payment["id"]},
    )
    cards.record_checkout_agreement(session, payment["id"], obj, now)
    amount = appointment_rules.money(int(payment["amount_cents"] or 0))  # the amount checked just above
    when = local_label(appt["starts_at"], appt["timezone"])
    what = f"{appt['service_name']} with {appt['provider_name']} on {when}"
    pending = appt["status"] == appointment_rules.PENDING_DEPOSIT
    if pending or (appt["status"] == appointment_rules.EXPIRED and _retake_slot(session, appt, now)):
        if pending:
            session.execute(
                text(
                    """UPDATE appointments SET status = 'booked', hold_expires_at = NULL, calendar_sync = 'pending',
                              updated_at = now() WHERE id = :id"""
                ),
                {"id": appt["id"]},
            )
        else:
            outcome.action = "rebooked"
        _advance_conversation(session, appt, AgentEvent.DEPOSIT_PAID)
        body = f"{appt['clinic_name']}: thank you, your {amount} deposit is received. Your {what} is confirmed."
        outcome.outbox_ids = _notify(session, clinic_id, appt, routing, body, f"deposit-paid:{appt['id']}", trace)
        outcome.calendar = True
    elif appt["status"] in appointment_rules.BOOKED_STATUSES:
        body = f"{appt['clinic_name']}: thank you, your {amount} deposit is received. Your {what} is confirmed."
        outcome.outbox_ids = _notify(session, clinic_id, appt, routing, body, f"deposit-paid:{appt['id']}", trace)
        outcome.calendar = True
    else:
        # The slot is gone (hold released and re-taken, or the appointment was cancelled): give the money back.
        outcome.action = "refund_late"
        outcome.refund = True
        session.execute(text("UPDATE payments SET status = 'refund_due' WHERE id = :id"), {"id": payment["id"]})
        reason = (
            "that appointment was cancelled"
            if appt["status"] == appointment_rules.CANCELLED
            else "the hold had already ended and the time is no longer available"
        )
        body = (
            f"{appt['clinic_name']}: we received your {amount} deposit for {what}, but {reason}, so the "
            "deposit is being refunded in full. Reply here and we'll find you a time."
        )
        outcome.outbox_ids = _notify(session, clinic_id, appt, routing, body, f"deposit-late:{appt['id']}", trace)
    return outcome


def _retake_slot(session: Session, appt: dict[str, Any], now: datetime) -> bool:
    """A late payment for a released hold: take the slot back if nobody else has it (savepoint; the
    exclusion constraint is the judge)."""
    if appt["starts_at"] <= now:
        return False
    try:
        with session.begin_nested():
            session.execute(
                text(
                    """UPDATE appointments SET status = 'booked', hold_expires_at = NULL,
                              calendar_sync = 'pending', updated_at = now()
                       WHERE id = :id AND status = 'expired'"""
                ),
                {"id": appt["id"]},
            )
    except DBAPIError as exc:
        if isinstance(getattr(exc, "orig", None), psycopg.errors.ExclusionViolation):
            return False
        raise
    return True


def _session_expired(
    session: Session, clinic_id: int, obj: dict[str, Any], now: datetime, routing: dict[str, Any], trace: str
) -> PaymentOutcome:
    appointment_id = _appointment_for_session(session, clinic_id, obj)
    appt = _lock_appointment(session, clinic_id, appointment_id) if appointment_id is not None else None
    if appt is None:
        return PaymentOutcome("ignored")
    payment = _lock_payment(session, clinic_id, appt, obj, now)
    outcome = PaymentOutcome("noted", appointment_id=appt["id"])
    if payment["status"] != "pending":
        outcome.action = "duplicate"  # e.g. 'expired' after 'paid': nothing to undo
        return outcome
    session.execute(
        text("UPDATE payments SET status = 'expired', updated_at = now() WHERE id = :id"), {"id": payment["id"]}
    )
    other_open = session.execute(
        text(
            """SELECT 1 FROM payments WHERE appointment_id = :a AND status = 'pending' AND id <> :id
                 AND expires_at > :now LIMIT 1"""
        ),
        {"a": appt["id"], "id": payment["id"], "now": now},
    ).first()
    # A clinic's hold may outlast Stripe's longest session (24 h): the session's end is not the hold's, and
    # expire_due_holds releases the slot when hold_expires_at passes (the patient may ask for a new link meanwhile).
    hold_running = appt["hold_expires_at"] is not None and appt["hold_expires_at"] > now
    if appt["status"] == appointment_rules.PENDING_DEPOSIT and other_open is None and not hold_running:
        outcome.action = "released"
        outcome.outbox_ids = release_hold(session, clinic_id, appt, routing, trace)
    return outcome


def _charge_refunded(session: Session, obj: dict[str, Any]) -> PaymentOutcome:
    """A refund made outside the agent (e.g. in the Stripe dashboard): keep our record true.

    ``amount_refunded`` is the charge's running total, so the largest one seen wins (events arrive in any order).
    Only a charge refunded in full makes the payment ``refunded``; after a partial refund it keeps its status and
    the settlement refunds or keeps what is still held (``domain.deposits.held_cents``)."""
    payment_intent = obj.get("payment_intent")
    if not payment_intent:
        return PaymentOutcome("ignored")
    refunded = int(obj.get("amount_refunded") or 0)
    charged = obj.get("amount")
    whole = bool(obj.get("refunded")) or (charged is not None and refunded >= int(charged))
    row = (
        session.execute(
            text(
                f"""SELECT id, appointment_id, amount_cents, refunded_cents FROM payments
                   WHERE payment_intent_id = :pi AND status IN {sql_list(deposits.REFUNDABLE_STATUSES)}
                   ORDER BY id LIMIT 1 FOR UPDATE"""
            ),
            {"pi": str(payment_intent)},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        return PaymentOutcome("ignored")
    total = max(int(row["refunded_cents"] or 0), refunded)
    full = whole or deposits.fully_refunded(int(row["amount_cents"]), total)
    session.execute(
        text(
            """UPDATE payments SET refunded_cents = :total, updated_at = now(),
                      status = CASE WHEN CAST(:full AS boolean) THEN :refunded ELSE status END
               WHERE id = :id"""
        ),
        {"total": total, "full": full, "refunded": deposits.REFUNDED, "id": row["id"]},
    )
    return PaymentOutcome("refunded" if full else "noted", appointment_id=int(row["appointment_id"]))


def _hold_for_review(
    session: Session,
    clinic_id: int,
    appt: dict[str, Any],
    payment: dict[str, Any],
    obj: dict[str, Any],
    outcome: PaymentOutcome,
) -> PaymentOutcome:
    """A checkout paid another amount or currency than the deposit we recorded (a session made by hand in the
    dashboard, a changed price): confirming would book the visit and text the patient a wrong amount.  The
    payment waits for staff (``review``: on their attention list), the conversation is handed to them, and the
    slot stays held without an end, so the hold expiry does not tell a patient who paid that nothing arrived."""
    session.execute(
        text(
            """UPDATE payments SET status = :review, payment_intent_id = coalesce(:pi, payment_intent_id),
                      updated_at = now() WHERE id = :id"""
        ),
        {"review": deposits.REVIEW, "pi": obj.get("payment_intent"), "id": payment["id"]},
    )
    session.execute(
        text("UPDATE appointments SET hold_expires_at = NULL, updated_at = now() WHERE id = :id AND status = :pending"),
        {"id": appt["id"], "pending": appointment_rules.PENDING_DEPOSIT},
    )
    if appt.get("conversation_id"):
        conversation_id = int(appt["conversation_id"])
        staff_takeover.take_over(session, conversation_id, reason=REVIEW_REASON)
        # Staff are told as for any handoff (once per payment, however often the event is redelivered).
        session.connection().exec_driver_sql(
            INSERT_ALERT, alert_params(clinic_id, conversation_id, "normal", f"deposit-review:{payment['id']}")
        )
    # Ids, amounts and currencies only: enough for staff to find it, nothing about the patient.
    log.error(
        "checkout paid an amount or currency other than the deposit recorded; held for staff review",
        extra={
            "clinic_id": clinic_id,
            "appointment_id": appt["id"],
            "payment_id": payment["id"],
            "expected_cents": int(payment["amount_cents"]),
            "expected_currency": str(payment["currency"]),
            "paid_cents": obj.get("amount_total"),
            "paid_currency": obj.get("currency"),
        },
    )
    outcome.action = "review"
    return outcome


# ------------------------------------------------------------------ holds
def release_hold(
    session: Session, clinic_id: int, appt: dict[str, Any], routing: dict[str, Any], trace: str = ""
) -> list[int]:
    """Free a pending-deposit slot (caller holds the appointment's row lock) and tell the patient."""
    session.execute(
        text(
            """UPDATE appointments SET status = 'expired', updated_at = now(),
                      calendar_sync = CASE WHEN calendar_event_id IS NULL THEN 'none' ELSE 'pending' END
               WHERE id = :id AND status = 'pending_deposit'"""
        ),
        {"id": appt["id"]},
    )
    session.execute(
        text(
            "UPDATE payments SET status = 'expired', updated_at = now() WHERE appointment_id = :a AND status = 'pending'"
        ),
        {"a": appt["id"]},
    )
    withdraw_appointment_messages(session, clinic_id, appt["id"])
    _advance_conversation(session, appt, AgentEvent.DEPOSIT_EXPIRED)
    when = local_label(appt["starts_at"], appt["timezone"])
    body = (
        f"{appt['clinic_name']}: the deposit for your {appt['service_name']} on {when} wasn't received in "
        "time, so we've released the hold on that slot. Reply here if you'd like to book again."
    )
    return _notify(session, clinic_id, appt, routing, body, f"hold-released:{appt['id']}", trace)


def expire_due_holds(container: Container, send_outbox_fn: SendOutbox, *, batch: int = 200) -> int:
    """Release every pending-deposit hold whose ``hold_expires_at`` passed (by ``container.clock``)."""
    now = container.clock.now()
    released = 0
    with container.database.directory_scope() as session:
        clinic_ids = [int(r) for r in session.execute(text("SELECT id FROM clinics ORDER BY id")).scalars()]
    for clinic_id in clinic_ids:
        with container.database.tenant_scope(clinic_id) as session:
            due = (
                session.execute(
                    text(
                        """SELECT id FROM appointments WHERE status = 'pending_deposit' AND hold_expires_at <= :now
                       ORDER BY hold_expires_at LIMIT :batch FOR UPDATE SKIP LOCKED"""
                    ),
                    {"now": now, "batch": batch},
                )
                .scalars()
                .all()
            )
        if not due:
            continue
        _, routing = container.clinic(clinic_id)
        outbox_ids: list[int] = []
        with container.database.tenant_scope(clinic_id) as session:
            for appointment_id in due:
                appt = _lock_appointment(session, clinic_id, int(appointment_id))
                # Re-check under the lock: a payment may have landed since the first read.
                if appt is None or appt["status"] != appointment_rules.PENDING_DEPOSIT or appt["hold_expires_at"] > now:
                    continue
                outbox_ids += release_hold(session, clinic_id, appt, routing)
                released += 1
        if outbox_ids:
            send_outbox_fn(clinic_id, outbox_ids)
    if released:
        log.info("deposit holds released", extra={"count": released})
    return released


# ------------------------------------------------------------------ helpers
def _advance_conversation(session: Session, appt: dict[str, Any], event: AgentEvent) -> None:
    """Move a conversation that waits for this deposit on (without touching its fencing version: a turn in
    flight keeps its right to commit)."""
    if not appt.get("conversation_id"):
        return
    target = next_state(AgentState.AWAITING_DEPOSIT, event)
    session.execute(
        text("UPDATE conversations SET agent_state = :to WHERE id = :id AND agent_state = :from_"),
        {"to": target.value, "id": appt["conversation_id"], "from_": AgentState.AWAITING_DEPOSIT.value},
    )


def _notify(
    session: Session,
    clinic_id: int,
    appt: dict[str, Any],
    routing: dict[str, Any],
    body: str,
    dedupe_key: str,
    trace: str,
) -> list[int]:
    """One message to the patient, once per ``dedupe_key``, on the channel they booked on (SMS if we have
    their number, else their chat), also written to the conversation history so the agent knows."""
    conversation_id = appt.get("conversation_id")
    chat = appt.get("channel") == "chat" and conversation_id is not None
    if not chat and not appt.get("phone_e164"):
        return []
    channel = "chat" if chat else "sms"
    text_body = body if chat else shape_sms_reply(body)
    row = OutboxRow(
        channel=channel,
        kind="notification",
        to_address=f"chat:{conversation_id}" if chat else str(appt["phone_e164"]),
        from_address=str(routing.get("sms_number") or ""),
        body=text_body,
        client_id=appt.get("client_id"),
        conversation_id=conversation_id if channel == appt.get("channel") else None,
        priority=0,
        dedupe_key=dedupe_key,
        trace_id=trace or "",
    )
    ids = insert_rows(session, clinic_id, [row])
    if ids and row.conversation_id is not None:
        write_history_message(
            session,
            clinic_id,
            row.conversation_id,
            text_body,
            role="assistant",
            channel=channel,
            meta={"source": "payments"},
            outbox_id=ids[0],
        )
    return ids
