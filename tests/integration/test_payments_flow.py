"""payments_flow against the real database: Stripe-shaped events applied once, in any order.

Events are recorded in the inbox exactly as the webhook records them; follow-ups
(sends, calendar sync, refunds) are captured instead of enqueued so nothing
leaks into the shared Redis.  Refunds go through the real stripe SDK to the
local Stripe fake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from medspa.services import Infrastructure
from medspa.settings import Settings
from tests.fakes.stripe_api import FakeStripeApi
from tests.support.phones import random_phone
from tests.support.stack import FrozenClock
from worker.container import Container, build_container
from worker.deposit_refunds import deposit_decision, refund_deposit_for, unrefunded_cancellations
from worker.payments_flow import apply_payment_event, expire_due_holds

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
) -> int:
    obj: dict[str, Any] = {
        "id": session_id or booking.session_id,
        "object": "checkout.session",
        "amount_total": 5000,
        "currency": "usd",
        "metadata": {"clinic_id": str(CLINIC), "appointment_id": str(booking.appointment_id)},
    }
    if event_type == "checkout.session.completed":
        obj.update(status="complete", payment_status="paid", payment_intent="pi_" + uuid.uuid4().hex[:24])
    else:
        obj.update(status="expired", payment_status="unpaid")
    payload = {"type": event_type, "object": obj, "created": int(NOW.timestamp())}
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
                      cv.agent_state
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
    booking = _book(container)
    event_id = "evt_twice_" + uuid.uuid4().hex
    first = _event(container, booking, "checkout.session.expired", event_id=event_id)
    other_clinic_copy = _event(container, booking, "checkout.session.expired", event_id=event_id, clinic_id=2)
    rec = Recorder()
    assert apply_payment_event(container, CLINIC, first, rec.send, follow_up=rec.follow_up).action == "released"
    assert apply_payment_event(container, 2, other_clinic_copy, rec.send, follow_up=rec.follow_up).action == "duplicate"
    assert len(rec.sent) == 1


def test_expired_checkout_releases_the_hold_and_frees_the_slot(env: tuple[Container, FrozenClock]) -> None:
    container, _ = env
    booking = _book(container)
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
