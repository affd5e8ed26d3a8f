"""payments_flow against the real database: Stripe-shaped events applied once, in any order.

Events are recorded in the inbox exactly as the webhook records them; follow-ups
(sends, calendar sync, refunds) are captured instead of enqueued so nothing
leaks into the shared Redis.  Refunds go through the real stripe SDK to the
local Stripe fake.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from medspa.services import Infrastructure
from medspa.settings import Settings
from tests.fakes.stripe_api import FakeStripeApi
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import FrozenClock
from worker.container import Container, build_container
from worker.deposit_refunds import deposit_decision, refund_deposit_for, unrefunded_cancellations
from worker.payments_flow import REVIEW_REASON, apply_payment_event, expire_due_holds

KEY = "sk_test_payments_flow"
CLINIC = 1
NOW = datetime.now(UTC).replace(microsecond=0)  # near real time: other tests' holds are not "due"


@dataclass
class Recorder:
    sent: list[tuple[int, list[int]]] = field(default_factory=list)
    follow_ups: list[tuple[str, int, int]] = field(default_factory=list)

    def send(self, clinic_id: int, ids: list[int]) -> None:
        self.sent.append((clinic_id, list(ids)))

    def follow_up(self, kind: str, clinic_id: int, appointment_id: int) -> None:
        self.follow_ups.append((kind, clinic_id, appointment_id))


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripeApi]:
    with FakeStripeApi(KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def env(infra: Infrastructure, stripe_fake: FakeStripeApi) -> Iterator[tuple[Container, FrozenClock]]:
    settings = Settings(
        _env_file=None,
        database_url=infra.database_url,
        redis_url=infra.redis_url,
        model_provider="offline",
        local_embeddings=False,
        stripe_api_key=KEY,
        stripe_api_base=stripe_fake.base_url,
        public_base_url="http://127.0.0.1:9",
        worker_threads=2,
    )
    clock = FrozenClock(NOW)
    container = build_container(settings, clock=clock)
    yield container, clock
    container.close()


_slot_counter = iter(range(10_000))
_SLOT_BASE = datetime(2030, 6, 11, 17, 0, tzinfo=UTC) + timedelta(days=7 * (uuid.uuid4().int % 50))


def _next_start() -> datetime:
    n = next(_slot_counter)
    return _SLOT_BASE + timedelta(days=7 * (n // 6), hours=n % 6)  # Tuesdays 10:00-15:00 LA, one per hour


@dataclass
class Booking:
    appointment_id: int
    client_id: int
    conversation_id: int
    session_id: str
    phone: str
    starts_at: datetime
    provider_id: int


def _book(
    container: Container,
    *,
    status: str = "pending_deposit",
    hold: timedelta = timedelta(minutes=60),
    start: datetime | None = None,
    payment_status: str = "pending",
    payment_intent: str | None = None,
) -> Booking:
    phone = random_phone()
    start = start or _next_start()
    session_id = "cs_test_" + uuid.uuid4().hex
    with container.database.tenant_scope(CLINIC) as session:
        provider_id, service_id = session.execute(
            text(
                """SELECT p.id, s.id FROM providers p, services s
               WHERE p.slug = 'maya-chen' AND s.slug = 'neurotoxin' AND p.clinic_id = 1 AND s.clinic_id = 1"""
            )
        ).one()
        client_id = session.execute(
            text("INSERT INTO clients (clinic_id, phone_e164, consent_state) VALUES (1, :p, 'opted_in') RETURNING id"),
            {"p": phone},
        ).scalar_one()
        conversation_id = session.execute(
            text(
                """INSERT INTO conversations (clinic_id, client_id, channel, agent_state)
               VALUES (1, :c, 'sms', 'awaiting_deposit') RETURNING id"""
            ),
            {"c": client_id},
        ).scalar_one()
        appointment_id = session.execute(
            text(
                """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, conversation_id, starts_at,
                   ends_at, blocked_until, status, source_key, deposit_cents, hold_expires_at)
               VALUES (1, :client, :p, :s, :conv, :start, :start + interval '30 minutes',
                   :start + interval '40 minutes', :status, :key, 5000, :hold) RETURNING id"""
            ),
            {
                "client": client_id,
                "p": provider_id,
                "s": service_id,
                "conv": conversation_id,
                "start": start,
                "status": status,
                "key": "test:" + uuid.uuid4().hex,
                "hold": NOW + hold,
            },
        ).scalar_one()
        session.execute(
            text(
                """INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
                   payment_intent_id, amount_cents, status, url, expires_at)
               VALUES (1, :a, :c, 'stripe', :sid, :pi, 5000, :st, 'https://checkout.stripe.com/x', :exp)"""
            ),
            {
                "a": appointment_id,
                "c": client_id,
                "sid": session_id,
                "pi": payment_intent,
                "st": payment_status,
                "exp": NOW + hold,
            },
        )
    return Booking(appointment_id, client_id, conversation_id, session_id, phone, start, provider_id)


def _event(
    container: Container,
    booking: Booking,
    event_type: str,
    *,
    event_id: str | None = None,
    session_id: str | None = None,
    clinic_id: int = CLINIC,
    amount_total: int = 5000,
    currency: str = "usd",
) -> int:
    obj: dict[str, Any] = {
        "id": session_id or booking.session_id,
        "object": "checkout.session",
        "amount_total": amount_total,
        "currency": currency,
        "metadata": {"clinic_id": str(CLINIC), "appointment_id": str(booking.appointment_id)},
    }
    if event_type == "checkout.session.completed":
        obj.update(status="complete", payment_status="paid", payment_intent="pi_" + uuid.uuid4().hex[:24])
    else:
        obj.update(status="expired", payment_status="unpaid")
    return _record(container, {"type": event_type, "object": obj, "created": int(NOW.timestamp())}, event_id, clinic_id)


def _charge_refunded(container: Container, payment_intent: str, amount_refunded: int) -> int:
    """Stripe's ``charge.refunded`` for a $50 deposit charge: ``amount_refunded`` is the charge's running total
    (sent for a partial refund too; ``refunded`` only once the whole charge is)."""
    charge = {
        "id": "ch_" + uuid.uuid4().hex[:24],
        "object": "charge",
        "payment_intent": payment_intent,
        "amount": 5000,
        "amount_refunded": amount_refunded,
        "refunded": amount_refunded >= 5000,
        "currency": "usd",
    }
    return _record(container, {"type": "charge.refunded", "object": charge, "created": int(NOW.timestamp())})


def _record(container: Container, payload: dict[str, Any], event_id: str | None = None, clinic_id: int = CLINIC) -> int:
    with container.database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text(
                    """INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
               VALUES (:c, 'stripe', :e, 'stripe', CAST(:p AS jsonb), 't') RETURNING id"""
                ),
                {"c": clinic_id, "e": event_id or "evt_" + uuid.uuid4().hex, "p": json.dumps(payload)},
            ).scalar_one()
        )


def _state(container: Container, booking: Booking) -> dict[str, Any]:
    with container.database.tenant_scope(CLINIC) as session:
        row = (
            session.execute(
                text(
                    """SELECT a.status, a.hold_expires_at, a.calendar_sync, p.status AS payment, p.payment_intent_id,
                      p.refunded_cents, cv.agent_state, cv.handoff_reason
               FROM appointments a JOIN payments p ON p.appointment_id = a.id
               JOIN conversations cv ON cv.id = a.conversation_id WHERE a.id = :id ORDER BY p.id LIMIT 1"""
                ),
                {"id": booking.appointment_id},
            )
            .mappings()
            .one()
        )
        outbox = (
            session.execute(
                text(
                    """SELECT o.id, o.dedupe_key, o.body, o.to_address, m.role AS history_role,
                              m.meta->>'source' AS history_source, m.body AS history_body
                       FROM outbox o LEFT JOIN messages m ON m.id = (o.meta->>'message_id')::bigint
                       WHERE o.client_id = :c ORDER BY o.id"""
                ),
                {"c": booking.client_id},
            )
            .mappings()
            .all()
        )
    return {**row, "outbox": [dict(o) for o in outbox]}


def _inbox_status(container: Container, inbox_id: int) -> str:
    with container.database.tenant_scope(CLINIC) as session:
        return str(session.execute(text("SELECT status FROM inbox_events WHERE id = :id"), {"id": inbox_id}).scalar())


def test_completed_checkout_confirms_the_booking_once(env: tuple[Container, FrozenClock]) -> None:
    container, _ = env
    booking = _book(container)
    inbox_id = _event(container, booking, "checkout.session.completed", event_id="evt_once_" + uuid.uuid4().hex)
    rec = Recorder()

    outcome = apply_payment_event(container, CLINIC, inbox_id, rec.send, follow_up=rec.follow_up)

    assert outcome.action == "confirmed"
    state = _state(container, booking)
    assert (state["status"], state["payment"], state["hold_expires_at"]) == ("booked", "paid", None)
    assert state["payment_intent_id"].startswith("pi_")
    assert state["agent_state"] == "booked"
    assert state["calendar_sync"] == "pending"
    [message] = state["outbox"]
    assert message["dedupe_key"] == f"deposit-paid:{booking.appointment_id}"
    assert message["to_address"] == booking.phone
    assert "$50 deposit is received" in message["body"] and "confirmed" in message["body"]
    # Written to the conversation's history too (linked to its outbox row), so the agent knows.
    assert (message["history_role"], message["history_source"], message["history_body"]) == (
        "assistant",
        "payments",
        message["body"],
    )
    assert rec.sent == [(CLINIC, [message["id"]])]
    assert rec.follow_ups == [("calendar", CLINIC, booking.appointment_id)]
    assert _inbox_status(container, inbox_id) == "processed"

    # The same inbox row again (a redelivered actor) and a second event for the same payment: no-ops.
    again = Recorder()
    assert apply_payment_event(container, CLINIC, inbox_id, again.send, follow_up=again.follow_up).action == "duplicate"
    second = _event(container, booking, "checkout.session.completed")
    assert apply_payment_event(container, CLINIC, second, again.send, follow_up=again.follow_up).action == "duplicate"
    assert again.sent == [] and again.follow_ups == []
    assert len(_state(container, booking)["outbox"]) == 1
    assert _inbox_status(container, second) == "processed"


def test_same_event_id_recorded_twice_is_applied_once(env: tuple[Container, FrozenClock]) -> None:
    """processed_webhook_events (provider, event_id) is the last line: even if an event id got into the inbox
    twice (e.g. under another clinic's metadata), only the first application does anything."""
    container, _ = env
    booking = _book(container, hold=timedelta(0))  # the session ends with the hold (its expiry is the hold's)
    event_id = "evt_twice_" + uuid.uuid4().hex
    first = _event(container, booking, "checkout.session.expired", event_id=event_id)
    other_clinic_copy = _event(container, booking, "checkout.session.expired", event_id=event_id, clinic_id=2)
    rec = Recorder()
    assert apply_payment_event(container, CLINIC, first, rec.send, follow_up=rec.follow_up).action == "released"
    assert apply_payment_event(container, 2, other_clinic_copy, rec.send, follow_up=rec.follow_up).action == "duplicate"
    assert len(rec.sent) == 1


def test_expired_checkout_releases_the_hold_and_frees_the_slot(env: tuple[Container, FrozenClock]) -> None:
    container, _ = env
    booking = _book(container, hold=timedelta(0))  # the session ends with the hold (its expiry is the hold's)
    rec = Recorder()

    outcome = apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.expired"), rec.send, follow_up=rec.follow_up
    )

    assert outcome.action == "released"
    state = _state(container, booking)
    assert (state["status"], state["payment"], state["calendar_sync"]) == ("expired", "expired", "none")
    assert state["agent_state"] == "idle"
    [message] = state["outbox"]
    assert message["dedupe_key"] == f"hold-released:{booking.appointment_id}"
    assert "released the hold" in message["body"]
    assert rec.follow_ups == []
    # The slot is free again: another patient can book the same provider at the same time.
    other = _book(container, start=booking.starts_at)
    assert _state(container, other)["status"] == "pending_deposit"


def test_expired_after_paid_does_nothing(env: tuple[Container, FrozenClock]) -> None:
    container, _ = env
    booking = _book(container)
    rec = Recorder()
    apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.completed"), rec.send, follow_up=rec.follow_up
    )
    late = Recorder()

    outcome = apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.expired"), late.send, follow_up=late.follow_up
    )

    assert outcome.action == "duplicate"
    state = _state(container, booking)
    assert (state["status"], state["payment"]) == ("booked", "paid")
    assert [o["dedupe_key"] for o in state["outbox"]] == [f"deposit-paid:{booking.appointment_id}"]
    assert late.sent == [] and late.follow_ups == []


def test_payment_after_the_hold_ended_retakes_a_free_slot(env: tuple[Container, FrozenClock]) -> None:
    container, clock = env
    booking = _book(container, hold=timedelta(minutes=-1))
    rec = Recorder()
    assert expire_due_holds(container, rec.send) >= 1
    assert _state(container, booking)["status"] == "expired"

    outcome = apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.completed"), rec.send, follow_up=rec.follow_up
    )

    assert outcome.action == "rebooked"
    state = _state(container, booking)
    assert (state["status"], state["payment"], state["calendar_sync"]) == ("booked", "paid", "pending")
    assert [o["dedupe_key"] for o in state["outbox"]] == [
        f"hold-released:{booking.appointment_id}",
        f"deposit-paid:{booking.appointment_id}",
    ]
    assert ("calendar", CLINIC, booking.appointment_id) in rec.follow_ups


def test_payment_for_a_slot_someone_else_took_is_refunded(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    container, _ = env
    booking = _book(container, hold=timedelta(minutes=-1))
    rec = Recorder()
    expire_due_holds(container, rec.send)
    taken = _book(container, start=booking.starts_at)  # the released slot is booked by someone else

    outcome = apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.completed"), rec.send, follow_up=rec.follow_up
    )

    assert outcome.action == "refund_late"
    state = _state(container, booking)
    assert (state["status"], state["payment"]) == ("expired", "refund_due")
    assert "refunded in full" in state["outbox"][-1]["body"]
    assert rec.follow_ups == [("refund", CLINIC, booking.appointment_id)]
    assert _state(container, taken)["status"] == "pending_deposit"
    assert booking.appointment_id in unrefunded_cancellations(container, CLINIC, settled_s=0)

    # The follow-up: a refund through Stripe with the appointment's idempotency key, whatever the policy says.
    assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "refunded"
    refund_call = stripe_fake.requests_to("POST", "/v1/refunds")[-1]
    assert refund_call.header("Idempotency-Key") == f"refund:{booking.appointment_id}"
    assert dict(refund_call.form_pairs()) == {"payment_intent": state["payment_intent_id"], "amount": "5000"}
    assert _state(container, booking)["payment"] == "refunded"
    assert booking.appointment_id not in unrefunded_cancellations(container, CLINIC, settled_s=0)
    stripe_fake.assert_clean()


def test_hold_expiry_uses_the_container_clock(env: tuple[Container, FrozenClock]) -> None:
    container, clock = env
    due = _book(container, hold=timedelta(minutes=10))
    later = _book(container, hold=timedelta(minutes=90))
    paid = _book(container, status="booked", hold=timedelta(minutes=10), payment_status="paid")
    rec = Recorder()
    try:
        clock.set(NOW + timedelta(minutes=30))
        expire_due_holds(container, rec.send)
        assert _state(container, due)["status"] == "expired"
        assert _state(container, due)["payment"] == "expired"
        assert _state(container, later)["status"] == "pending_deposit"
        assert _state(container, paid)["status"] == "booked"
        released_ids = [o["id"] for o in _state(container, due)["outbox"]]
        assert any(ids == released_ids for _, ids in rec.sent)
        # Running again releases nothing twice.
        again = Recorder()
        expire_due_holds(container, again.send)
        assert all(set(ids).isdisjoint(released_ids) for _, ids in again.sent)
    finally:
        clock.set(NOW)


@pytest.mark.parametrize(
    ("hours_before", "policies", "expected"),
    [
        (48, {"cancellation_window_hours": 24}, "refund"),
        (2, {"cancellation_window_hours": 24}, "keep"),
        (2, {"cancellation_window_hours": 24, "deposit_refund_inside_window": True}, "refund"),
        (48, {"cancellation_window_hours": 24, "deposit_refund_outside_window": False}, "keep"),
    ],
)
def test_deposit_decision_follows_the_policy_window(hours_before: int, policies: dict[str, Any], expected: str) -> None:
    start = NOW + timedelta(days=3)
    assert deposit_decision(policies, start, start - timedelta(hours=hours_before)) == expected


def _cancel(container: Container, booking: Booking, cancelled_at: datetime) -> None:
    with container.database.tenant_scope(CLINIC) as session:
        session.execute(
            text("UPDATE appointments SET status = 'cancelled', cancelled_at = :t WHERE id = :id"),
            {"t": cancelled_at, "id": booking.appointment_id},
        )


def test_refund_outside_the_window_and_keep_inside(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    container, _ = env
    early = _book(container, status="booked", payment_status="paid", payment_intent="pi_" + uuid.uuid4().hex[:24])
    late = _book(container, status="booked", payment_status="paid", payment_intent="pi_" + uuid.uuid4().hex[:24])
    assert refund_deposit_for(container, CLINIC, early.appointment_id) == "live"  # not cancelled: nothing moves
    _cancel(container, early, early.starts_at - timedelta(days=3))
    _cancel(container, late, late.starts_at - timedelta(hours=3))
    before = len(stripe_fake.requests_to("POST", "/v1/refunds"))

    assert refund_deposit_for(container, CLINIC, early.appointment_id) == "refunded"
    assert refund_deposit_for(container, CLINIC, early.appointment_id) == "nothing"  # a retry: already done
    assert refund_deposit_for(container, CLINIC, late.appointment_id) == "kept"

    calls = stripe_fake.requests_to("POST", "/v1/refunds")[before:]
    assert [c.header("Idempotency-Key") for c in calls] == [f"refund:{early.appointment_id}"]
    assert _state(container, early)["payment"] == "refunded"
    assert _state(container, late)["payment"] == "kept"


def test_refund_errors_retry_or_stop(env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi) -> None:
    from domain.ports import PaymentError

    container, _ = env
    booking = _book(container, status="booked", payment_status="paid", payment_intent="pi_" + uuid.uuid4().hex[:24])
    _cancel(container, booking, booking.starts_at - timedelta(days=3))
    stripe_fake.server_error_next()
    with pytest.raises(PaymentError) as caught:
        refund_deposit_for(container, CLINIC, booking.appointment_id)
    assert caught.value.retryable
    assert _state(container, booking)["payment"] == "paid"  # untouched: the actor retries

    stripe_fake.card_declined_next()  # a refusal is final: staff refund by hand, the sweep stops
    assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "failed"
    assert _state(container, booking)["payment"] == "refund_failed"
    assert booking.appointment_id not in unrefunded_cancellations(container, CLINIC, settled_s=0)


def _paid_booking(container: Container) -> tuple[Booking, str]:
    payment_intent = "pi_" + uuid.uuid4().hex[:24]
    return _book(container, status="booked", payment_status="paid", payment_intent=payment_intent), payment_intent


def test_a_partial_dashboard_refund_leaves_the_rest_to_settle(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    """$20 of a $50 deposit refunded in the Stripe dashboard: the deposit is not 'refunded' (the clinic still holds
    $30), and an early cancel refunds those $30 — once, under the appointment's key."""
    container, _ = env
    booking, payment_intent = _paid_booking(container)
    rec = Recorder()

    apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 2000), rec.send)

    state = _state(container, booking)
    assert (state["payment"], state["refunded_cents"]) == ("paid", 2000)
    _cancel(container, booking, booking.starts_at - timedelta(days=3))
    assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "refunded"
    refund_call = stripe_fake.requests_to("POST", "/v1/refunds")[-1]
    assert refund_call.header("Idempotency-Key") == f"refund:{booking.appointment_id}"
    assert dict(refund_call.form_pairs()) == {"payment_intent": payment_intent, "amount": "3000"}
    assert (_state(container, booking)["payment"], _state(container, booking)["refunded_cents"]) == ("refunded", 5000)

    # Stripe's event for our refund (the running total is now the whole charge), and the earlier partial one
    # redelivered late, leave the record as it is.
    apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 5000), rec.send)
    apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 2000), rec.send)
    assert (_state(container, booking)["payment"], _state(container, booking)["refunded_cents"]) == ("refunded", 5000)
    keys = [r.header("Idempotency-Key") for r in stripe_fake.requests_to("POST", "/v1/refunds")]
    assert keys.count(f"refund:{booking.appointment_id}") == 1
    stripe_fake.assert_clean()


def test_a_dashboard_refund_made_in_two_steps_settles_the_deposit(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    """$20, then the remaining $30, refunded in the dashboard: the deposit is refunded only once the whole charge
    is, and a cancel afterwards has nothing left to refund."""
    container, _ = env
    booking, payment_intent = _paid_booking(container)
    partial = apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 2000), Recorder().send)
    assert (partial.action, _state(container, booking)["payment"]) == ("noted", "paid")

    whole = apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 5000), Recorder().send)

    assert whole.action == "refunded"
    assert (_state(container, booking)["payment"], _state(container, booking)["refunded_cents"]) == ("refunded", 5000)
    before = len(stripe_fake.requests_to("POST", "/v1/refunds"))
    _cancel(container, booking, booking.starts_at - timedelta(days=3))
    assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "nothing"
    assert len(stripe_fake.requests_to("POST", "/v1/refunds")) == before


def test_what_a_partial_refund_left_nets_the_late_cancel_fee(env: tuple[Container, FrozenClock]) -> None:
    """The clinic keeps the deposit inside its window and charges a $50 late fee: after a $20 dashboard refund the
    deposit kept is $30 and $20 of the fee is still due (not $50 kept, nor nothing)."""
    from domain.visits import Transition
    from worker.visits.transitions import record_visit

    container, _ = env
    booking, payment_intent = _paid_booking(container)
    apply_payment_event(container, CLINIC, _charge_refunded(container, payment_intent, 2000), Recorder().send)
    rec = Recorder()

    result = record_visit(
        container.database,
        CLINIC,
        booking.appointment_id,
        Transition.LATE_CANCEL,
        booking.starts_at - timedelta(hours=3),
        rec.follow_up,
        by="test",
    )

    assert "deposit of $30 kept (clinic policy)" in result.notes
    assert any(note.startswith("$20 late cancel fee") for note in result.notes), result.notes
    assert _state(container, booking)["payment"] == "kept"


def test_a_settlement_racing_another_records_the_refund(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    """Two settlements of one deposit at once (the cancel's inline one and the actor, say): Stripe answers the
    second with 409 while the first, same key, is in flight.  That is not a refusal: the second is retried and the
    first's refund is what the record says."""
    from domain.ports import PaymentError

    container, _ = env
    booking, _pi = _paid_booking(container)
    _cancel(container, booking, booking.starts_at - timedelta(days=3))
    release = stripe_fake.pause_next_create()
    first: list[str] = []
    winner = threading.Thread(
        target=lambda: first.append(refund_deposit_for(container, CLINIC, booking.appointment_id))
    )
    winner.start()
    try:
        assert stripe_fake.paused.wait(10), "the first refund request never reached Stripe"
        with pytest.raises(PaymentError) as caught:
            refund_deposit_for(container, CLINIC, booking.appointment_id)
        assert caught.value.retryable
        assert _state(container, booking)["payment"] == "paid"
    finally:
        release.set()
        winner.join(timeout=30)
    assert first == ["refunded"]
    assert _state(container, booking)["payment"] == "refunded"
    # The retry finds it settled.
    assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "nothing"
    stripe_fake.assert_clean()


def test_a_refund_that_went_through_is_recorded_over_a_concurrent_failure(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi
) -> None:
    """A concurrent settlement refused outright marked the payment 'refund_failed' while the first one's refund
    was in flight; the first one's success is still recorded (the money is back with the patient)."""
    container, _ = env
    booking, _pi = _paid_booking(container)
    _cancel(container, booking, booking.starts_at - timedelta(days=3))
    release = stripe_fake.pause_next_create()
    first: list[str] = []
    winner = threading.Thread(
        target=lambda: first.append(refund_deposit_for(container, CLINIC, booking.appointment_id))
    )
    winner.start()
    try:
        assert stripe_fake.paused.wait(10), "the first refund request never reached Stripe"
        stripe_fake.card_declined_next()
        assert refund_deposit_for(container, CLINIC, booking.appointment_id) == "failed"
        assert _state(container, booking)["payment"] == "refund_failed"
    finally:
        release.set()
        winner.join(timeout=30)
    assert first == ["refunded"]
    assert _state(container, booking)["payment"] == "refunded"


def test_a_patients_cancel_waits_for_a_deposit_landing_meanwhile(
    env: tuple[Container, FrozenClock], stripe_fake: FakeStripeApi, owner_engine: Engine
) -> None:
    """The deposit's checkout completes while the patient's cancel is between reading the appointment and changing
    it: the payment waits for the cancel, then finds the appointment cancelled and refunds in full — the patient is
    never told "no deposit" while the deposit is silently kept."""
    from domain.ports import Payments
    from worker.tools.context import ToolContext

    container, _ = env
    booking = _book(container, hold=timedelta(hours=2))
    with container.database.tenant_scope(CLINIC) as session:
        version = session.execute(
            text("SELECT version FROM conversations WHERE id = :id"), {"id": booking.conversation_id}
        ).scalar_one()
    payments: Payments = container.payments
    ctx = ToolContext(
        container.database,
        CLINIC,
        booking.client_id,
        booking.conversation_id,
        int(version),
        NOW,
        payments,
        calendar=None,
        embedder=None,
        public_base_url="http://127.0.0.1:9",
    )
    paid = _event(container, booking, "checkout.session.completed")
    rec = Recorder()
    applied: list[str] = []
    applying = threading.Thread(
        target=lambda: applied.append(
            apply_payment_event(container, CLINIC, paid, rec.send, follow_up=rec.follow_up).action
        )
    )

    cancel_backend: list[int] = []

    def fenced(session: Session) -> None:
        cancel_backend.append(int(session.execute(text("SELECT pg_backend_pid()")).scalar_one()))
        ctx.verify_fence(session)

    def the_payment_lands(_outcome: object) -> str:
        # The cancel has read the appointment and its (still unpaid) deposit, and has not changed it yet.
        applying.start()

        def applied_or_waiting_for_the_cancel() -> bool:
            if applied:
                return True
            with owner_engine.connect() as conn:
                return bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE CAST(:pid AS int) = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": cancel_backend[0]},
                    ).scalar()
                )

        wait_for(applied_or_waiting_for_the_cancel, 10, what="the payment applied, or waiting for the cancel")
        return ""

    outcome = ctx.service.cancel(
        lambda session: ctx.own_appointment(session, booking.appointment_id),
        reason="patient cancelled",
        guard=fenced,
        note=the_payment_lands,
    )
    applying.join(timeout=30)

    assert applied == ["refund_late"], "the payment must see the cancel, not slip in before it"
    assert outcome.deposit is None and outcome.terms.deposit_paid_cents == 0
    state = _state(container, booking)
    assert (state["status"], state["payment"]) == ("cancelled", "refund_due")
    assert "refunded in full" in state["outbox"][-1]["body"]
    assert rec.follow_ups == [("refund", CLINIC, booking.appointment_id)]


@pytest.mark.parametrize(("amount_total", "currency"), [(2500, "usd"), (5000, "eur")])
def test_a_checkout_for_another_amount_waits_for_staff(
    env: tuple[Container, FrozenClock], amount_total: int, currency: str, caplog: pytest.LogCaptureFixture
) -> None:
    container, _ = env
    booking = _book(container)
    rec = Recorder()

    with caplog.at_level("ERROR", logger="worker.payments_flow"):
        outcome = apply_payment_event(
            container,
            CLINIC,
            _event(container, booking, "checkout.session.completed", amount_total=amount_total, currency=currency),
            rec.send,
            follow_up=rec.follow_up,
        )

    assert outcome.action == "review"
    state = _state(container, booking)
    # Not booked, nobody texted an amount, the slot kept for the patient who paid until staff decide.
    assert (state["status"], state["payment"], state["hold_expires_at"]) == ("pending_deposit", "review", None)
    assert state["outbox"] == [] and rec.sent == [] and rec.follow_ups == []
    assert (state["agent_state"], state["handoff_reason"]) == ("handoff", REVIEW_REASON)
    [record] = [r for r in caplog.records if "held for staff review" in r.getMessage()]
    assert (record.paid_cents, record.paid_currency, record.expected_cents) == (amount_total, currency, 5000)  # type: ignore[attr-defined]
    with container.database.tenant_scope(CLINIC) as session:
        alerts = session.execute(
            text("SELECT count(*) FROM handoff_alerts WHERE conversation_id = :c"), {"c": booking.conversation_id}
        ).scalar_one()
    assert alerts == 1
    # Redelivered, or the hold's time passing: nothing more happens.
    again = _event(container, booking, "checkout.session.completed", amount_total=amount_total, currency=currency)
    assert apply_payment_event(container, CLINIC, again, rec.send, follow_up=rec.follow_up).action == "duplicate"
    assert _state(container, booking)["status"] == "pending_deposit"


def test_an_expired_checkout_leaves_a_longer_hold_running(env: tuple[Container, FrozenClock]) -> None:
    """A clinic holding slots for two days: Stripe's session ends after 24 h, the hold does not."""
    container, clock = env
    booking = _book(container, hold=timedelta(hours=48))
    rec = Recorder()

    outcome = apply_payment_event(
        container, CLINIC, _event(container, booking, "checkout.session.expired"), rec.send, follow_up=rec.follow_up
    )

    assert outcome.action == "noted"
    state = _state(container, booking)
    assert (state["status"], state["payment"], state["agent_state"]) == (
        "pending_deposit",
        "expired",
        "awaiting_deposit",
    )
    assert state["outbox"] == [] and rec.sent == []
    try:
        clock.set(NOW + timedelta(hours=49))
        expire_due_holds(container, rec.send)
    finally:
        clock.set(NOW)
    assert _state(container, booking)["status"] == "expired"


def test_money_nobody_retries_is_on_the_staff_attention_list(env: tuple[Container, FrozenClock]) -> None:
    """A refund Stripe refused, a payment held for review, and visit fees that failed or wait for the patient's
    bank: each is on ``medspa staff attention`` with what to do."""
    from scripts.staff import attention_rows

    container, _ = env
    refused, _pi = _paid_booking(container)
    with container.database.tenant_scope(CLINIC) as session:
        session.execute(
            text("UPDATE payments SET status = 'refund_failed', refunded_cents = 2000 WHERE appointment_id = :a"),
            {"a": refused.appointment_id},
        )
    review = _book(container)
    rec = Recorder()
    apply_payment_event(
        container,
        CLINIC,
        _event(container, review, "checkout.session.completed", amount_total=100),
        rec.send,
        follow_up=rec.follow_up,
    )
    declined, bank = _book(container, status="no_show"), _book(container, status="late_cancelled")
    with container.database.tenant_scope(CLINIC) as session:
        for booking, fee_status, kind in ((declined, "failed", "no_show"), (bank, "requires_action", "late_cancel")):
            session.execute(
                text(
                    """UPDATE appointments SET fee_status = :s, fee_kind = :k, fee_cents = 7500,
                              fee_error = :e WHERE id = :id"""
                ),
                {
                    "s": fee_status,
                    "k": kind,
                    "e": "card declined" if fee_status == "failed" else "",
                    "id": booking.appointment_id,
                },
            )
        rows = attention_rows(session, NOW + timedelta(minutes=5))

    listed = {r["appointment_id"]: (r["why"], r["reason"]) for r in rows if r.get("channel") == "payment"}
    assert listed[refused.appointment_id] == ("refund failed", "refund $30 by hand in Stripe: the refund was refused")
    assert listed[review.appointment_id] == ("payment review", "check the payment in Stripe: not the $50 deposit asked")
    assert listed[declined.appointment_id] == (
        "fee failed",
        "collect the $75 no show fee: the card charge failed (card declined)",
    )
    assert listed[bank.appointment_id] == (
        "fee needs patient",
        "collect the $75 late cancel fee: the bank wants the patient",
    )
    # The review's conversation is a handoff too (the patient's conversation is with staff).
    assert any(r["conversation_id"] == review.conversation_id and r["why"] == "handoff" for r in rows)
