"""The visit lifecycle on real Postgres: each day-of step allowed, refused and repeated; what it sets in motion
(deposit, fee, reminders withdrawn, the slot held or freed, spend segments); the end-of-day job; saving a card
from Stripe's webhooks; the off-session fee charge through the real stripe SDK to the local Stripe fake."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.audience import SegmentFilter
from domain.ports import CheckoutLink, DepositRequest, PaymentError
from domain.visits import Transition
from medspa.services import Infrastructure
from medspa.settings import Settings
from tests.fakes.stripe_api import FakeStripeApi
from tests.integration.test_automations import Clinic
from tests.support.infra import wait_for
from tests.support.stack import FrozenClock
from worker.campaigns.segments import segment_sql
from worker.container import Container, build_container
from worker.payments_flow import apply_payment_event
from worker.visits import end_of_day, fees
from worker.visits.transitions import CompletionDetails, VisitRefused, VisitResult, record_visit

KEY = "sk_test_visits"
CLINIC_TZ = ZoneInfo("America/Los_Angeles")  # the test clinics copy the demo clinic's zone
NOW = datetime.now(UTC).replace(microsecond=0)


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, kind: str, clinic_id: int, appointment_id: int) -> None:
        self.calls.append((kind, clinic_id, appointment_id))


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripeApi]:
    with FakeStripeApi(KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def container(infra: Infrastructure, stripe_fake: FakeStripeApi) -> Iterator[Container]:
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
    built = build_container(settings, clock=FrozenClock(NOW))
    yield built
    built.close()


def set_policies(owner_engine, clinic: Clinic, **policies: Any) -> None:  # type: ignore[no-untyped-def]
    with owner_engine.begin() as conn:
        conn.execute(
            text("UPDATE clinics SET policies = policies || CAST(:p AS jsonb) WHERE id = :c"),
            {"p": json.dumps(policies), "c": clinic.id},
        )


def visit(clinic: Clinic, starts_at: datetime, status: str = "booked") -> tuple[int, int]:
    client_id, _ = clinic.client("Vera Visit")
    return clinic.appointment(client_id, starts_at, status, created_at=starts_at - timedelta(days=5)), client_id


def deposit(owner_engine, clinic: Clinic, appointment_id: int, *, card: bool) -> int:  # type: ignore[no-untyped-def]
    """A paid deposit; ``card``: the patient saved a card for the fees at that checkout."""
    with owner_engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    """INSERT INTO payments (clinic_id, appointment_id, provider, checkout_session_id, payment_intent_id,
                           amount_cents, status, url, expires_at, customer_id, payment_method_id, card_saved_at,
                           card_terms)
                       VALUES (:c, :a, 'stripe', :sid, :pi, 5000, 'paid', 'https://x', now(), :cus, :pm, :at, :terms)
                       RETURNING id"""
                ),
                {
                    "c": clinic.id,
                    "a": appointment_id,
                    "sid": "cs_test_" + uuid.uuid4().hex,
                    "pi": "pi_" + uuid.uuid4().hex[:20],
                    "cus": "cus_x" if card else None,
                    "pm": "pm_x" if card else None,
                    "at": NOW if card else None,
                    "terms": "may charge $75 if you miss it" if card else "",
                },
            ).scalar_one()
        )


def row(database, clinic: Clinic, appointment_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with database.tenant_scope(clinic.id) as session:
        return dict(
            session.execute(
                text(
                    """SELECT a.*, (SELECT status FROM payments p WHERE p.appointment_id = a.id ORDER BY id LIMIT 1)
                              AS payment FROM appointments a WHERE a.id = :id"""
                ),
                {"id": appointment_id},
            )
            .mappings()
            .one()
        )


def step(database, clinic: Clinic, appointment_id: int, transition: Transition, now: datetime, **kw: Any):  # type: ignore[no-untyped-def]
    sink = Sink()
    result = record_visit(database, clinic.id, appointment_id, transition, now, sink, by="staff:test", **kw)
    return result, sink.calls


# ------------------------------------------------------------------ check in
def test_check_in_holds_the_slot_and_repeats_are_no_ops(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    start = NOW + timedelta(minutes=20)
    appt, client_id = visit(clinic, start, "confirmed")
    with pytest.raises(VisitRefused, match="too early"):
        step(database, clinic, appt, Transition.CHECK_IN, start - timedelta(days=1))
    with database.tenant_scope(clinic.id) as session:  # a queued reminder for the visit
        session.execute(
            text("""INSERT INTO outbox (clinic_id, channel, kind, to_address, body, status, dedupe_key, meta)
                    VALUES (:c, 'sms', 'automation', '+1', 'see you soon', 'queued', :k, CAST(:m AS jsonb))"""),
            {
                "c": clinic.id,
                "k": f"auto:reminder_2h:appt:{appt}",
                "m": json.dumps({"automation": "reminder_2h", "appointment_id": appt}),
            },
        )
    result, calls = step(database, clinic, appt, Transition.CHECK_IN, NOW)
    assert result.changed and result.status == "checked_in" and calls == []
    got = row(database, clinic, appt)
    assert got["status"] == "checked_in" and got["checked_in_at"] == NOW and got["outcome_at"] is None
    with database.tenant_scope(clinic.id) as session:
        status = session.execute(
            text("SELECT status FROM outbox WHERE dedupe_key = :k"), {"k": f"auto:reminder_2h:appt:{appt}"}
        ).scalar_one()
    assert status == "cancelled"  # withdrawn
    again, _ = step(database, clinic, appt, Transition.CHECK_IN, NOW + timedelta(minutes=1))
    assert not again.changed and "already" in again.notes[0]
    assert row(database, clinic, appt)["checked_in_at"] == NOW  # untouched
    # A checked-in visit still holds its provider: the exclusion constraint refuses an overlap.
    with pytest.raises(DBAPIError) as exc:
        clinic.appointment(client_id, start + timedelta(minutes=10), "booked", created_at=NOW)
    assert isinstance(exc.value.orig, psycopg.errors.ExclusionViolation)


# ------------------------------------------------------------------ complete
def test_complete_records_what_was_done_and_feeds_spend_segments(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    start = NOW - timedelta(hours=2)
    appt, client_id = visit(clinic, start)
    with pytest.raises(VisitRefused, match="not started"):
        step(database, clinic, appt, Transition.COMPLETE, start - timedelta(minutes=5))
    with pytest.raises(VisitRefused, match="no service"):
        step(database, clinic, appt, Transition.COMPLETE, NOW, details=CompletionDetails(service_slug="nope"))
    assert row(database, clinic, appt)["status"] == "booked"  # a refusal writes nothing
    details = CompletionDetails(amount_charged_cents=180_000, summary="Botox 40 units, forehead", service_slug="facial")
    result, calls = step(database, clinic, appt, Transition.COMPLETE, NOW, details=details)
    assert result.changed and calls == []
    # The clinic's aftercare (24 h) and review request (48 h) automations fall due after the visit's end.
    ends = start + timedelta(minutes=30)
    assert result.due == {"aftercare": ends + timedelta(hours=24), "review_request": ends + timedelta(hours=48)}
    got = row(database, clinic, appt)
    assert (got["status"], got["amount_charged_cents"], got["visit_summary"]) == (
        "completed",
        180_000,
        "Botox 40 units, forehead",
    )
    assert got["service_id"] == clinic.facial and got["outcome_at"] == NOW and got["outcome_by"] == "staff:test"
    # "spend" and "last visit" read completed visits: this one now counts.
    sql, params = segment_sql(SegmentFilter(min_spend_cents=150_000))
    with database.tenant_scope(clinic.id) as session:
        matched = (
            session.execute(text(sql), {**params, "clinic_id": clinic.id, "tz": "America/Los_Angeles", "now": NOW})
            .scalars()
            .all()
        )
    assert list(matched) == [client_id]
    again, _ = step(database, clinic, appt, Transition.COMPLETE, NOW, details=CompletionDetails(amount_charged_cents=1))
    assert not again.changed and row(database, clinic, appt)["amount_charged_cents"] == 180_000
    with pytest.raises(VisitRefused, match="cannot be marked a no-show"):
        step(database, clinic, appt, Transition.NO_SHOW, NOW)


def test_two_desks_completing_at_once_make_one_change(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    appt, _ = visit(clinic, NOW - timedelta(hours=1), "checked_in")
    results: list[VisitResult] = []
    barrier = threading.Barrier(2)

    def desk() -> None:
        barrier.wait()
        results.append(step(database, clinic, appt, Transition.COMPLETE, NOW)[0])

    threads = [threading.Thread(target=desk) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.changed for r in results) == [False, True]


# ------------------------------------------------------------------ no-show
def test_no_show_keeps_the_deposit_and_records_the_rest_of_the_fee_due(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    set_policies(owner_engine, clinic, no_show_fee_cents=7500, fees_on_saved_card=True)
    start = NOW - timedelta(minutes=40)
    appt, _ = visit(clinic, start)
    deposit(owner_engine, clinic, appt, card=True)
    with pytest.raises(VisitRefused, match="has not started"):
        step(database, clinic, appt, Transition.NO_SHOW, start - timedelta(minutes=1))
    result, calls = step(database, clinic, appt, Transition.NO_SHOW, NOW)
    assert result.changed and result.fee and calls == [("fee", clinic.id, appt)]
    got = row(database, clinic, appt)
    assert (got["status"], got["payment"]) == ("no_show", "kept")
    assert (got["fee_kind"], got["fee_cents"], got["fee_status"]) == ("no_show", 2500, "due")
    # Repeated while the fee is still due (its message lost): handed to the charge actor again, nothing else.
    again, calls = step(database, clinic, appt, Transition.NO_SHOW, NOW)
    assert not again.changed and calls == [("fee", clinic.id, appt)]


def test_no_show_without_a_saved_card_is_not_charged(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    set_policies(owner_engine, clinic, no_show_fee_cents=7500, fees_on_saved_card=True)
    appt, _ = visit(clinic, NOW - timedelta(minutes=40))
    deposit(owner_engine, clinic, appt, card=False)
    result, calls = step(database, clinic, appt, Transition.NO_SHOW, NOW)
    assert calls == [] and any("not charged" in n for n in result.notes)
    got = row(database, clinic, appt)
    assert got["fee_status"] is None and got["payment"] == "kept" and "not charged" in got["notes"]


def test_no_show_deposit_refund_policy_hands_the_refund_on(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    set_policies(owner_engine, clinic, no_show_deposit="refund")
    appt, _ = visit(clinic, NOW - timedelta(minutes=40))
    deposit(owner_engine, clinic, appt, card=False)
    _, calls = step(database, clinic, appt, Transition.NO_SHOW, NOW)
    assert calls == [("refund", clinic.id, appt)] and row(database, clinic, appt)["payment"] == "refund_due"


# ------------------------------------------------------------------ late cancel
def test_late_cancel_inside_the_window_frees_the_slot_and_charges_the_fee(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    set_policies(
        owner_engine, clinic, cancellation_window_hours=24, late_cancel_fee_cents=5000, fees_on_saved_card=True
    )
    far, _ = visit(clinic, NOW + timedelta(days=3))
    with pytest.raises(VisitRefused, match="appointments cancel"):
        step(database, clinic, far, Transition.LATE_CANCEL, NOW)
    start = NOW + timedelta(hours=3)
    appt, client_id = visit(clinic, start, "confirmed")
    deposit(owner_engine, clinic, appt, card=True)
    result, calls = step(database, clinic, appt, Transition.LATE_CANCEL, NOW, reason="Sick kid")
    assert result.status == "late_cancelled"
    assert sorted(calls) == [("calendar", clinic.id, appt)]  # the deposit covers the $50 fee: nothing to charge
    got = row(database, clinic, appt)
    assert (got["status"], got["payment"], got["cancel_reason"], got["calendar_sync"]) == (
        "late_cancelled",
        "kept",
        "Sick kid",
        "pending",
    )
    assert got["cancelled_at"] == NOW and got["fee_status"] is None
    clinic.appointment(client_id, start, "booked", created_at=NOW)  # the slot is free again
    over, _ = visit(clinic, NOW - timedelta(hours=2))
    with pytest.raises(VisitRefused, match="no-show instead"):
        step(database, clinic, over, Transition.LATE_CANCEL, NOW)


# ------------------------------------------------------------------ end of day
def test_end_of_day_lists_unresolved_visits_once_and_auto_no_show_is_opt_in(database, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE clinics SET oncall_phone = '+14155550177' WHERE id = :c"), {"c": clinic.id})
    set_policies(owner_engine, clinic, end_of_day_review_at="18:00")
    day = datetime.now(UTC).astimezone(CLINIC_TZ).date() - timedelta(days=7)
    morning = datetime.combine(day, datetime.min.time(), tzinfo=CLINIC_TZ).replace(hour=10)
    late, _ = visit(clinic, morning, "confirmed")
    came, _ = visit(clinic, morning + timedelta(hours=1), "checked_in")
    done, _ = visit(clinic, morning + timedelta(hours=2), "completed")
    before_close = morning.replace(hour=17)
    quiet = end_of_day.close_clinic_day(database, clinic.id, before_close)
    assert quiet.unresolved == [] and quiet.outbox_ids == [] and quiet.auto_no_shows == []  # off by default
    evening = morning.replace(hour=18, minute=5)
    closed = end_of_day.close_clinic_day(database, clinic.id, evening)
    assert closed.unresolved == [late, came] and len(closed.outbox_ids) == 1 and done not in closed.unresolved
    with database.tenant_scope(clinic.id) as session:
        (body,) = session.execute(
            text("SELECT body FROM outbox WHERE id = :id AND to_address = '+14155550177'"), {"id": closed.outbox_ids[0]}
        ).scalars()
        listed = end_of_day.unresolved_visits(session, evening)
    assert "2 visits" in body and str(late) in body and "Vera" not in body  # ids only, no patient names
    assert [r["appointment_id"] for r in listed] == [late, came]
    again = end_of_day.close_clinic_day(database, clinic.id, evening + timedelta(minutes=5))
    assert again.unresolved == [late, came] and again.outbox_ids == []  # one text a day
    # The clinic turns auto no-show on: booked / confirmed visits past the grace period are marked (through the
    # same step staff use); a checked-in one is not, nor one from before yesterday.
    set_policies(owner_engine, clinic, auto_no_show_after_minutes=30)
    fresh, _ = visit(clinic, evening - timedelta(minutes=40), "booked")
    old, _ = visit(clinic, evening - timedelta(days=2), "booked")
    auto = end_of_day.close_clinic_day(database, clinic.id, evening)
    assert [r.appointment_id for r in auto.auto_no_shows] == [late, fresh]
    got = row(database, clinic, fresh)
    assert got["status"] == "no_show" and got["outcome_by"] == end_of_day.AUTO_BY
    assert row(database, clinic, came)["status"] == "checked_in"
    assert row(database, clinic, old)["status"] == "booked"  # older than a day: left for staff


# ------------------------------------------------------------------ saved cards and fees
def test_deposit_checkout_saves_the_card_and_the_webhooks_record_it(container, stripe_fake, owner_engine) -> None:
    clinic = Clinic(owner_engine)
    appt, _ = visit(clinic, NOW + timedelta(days=2), "pending_deposit")
    terms = "Test Spa will save this card and may charge it $75 if you miss the appointment."
    link = deposit_checkout(container, owner_engine, clinic, appt, terms)
    stripe_fake.assert_clean()
    sent = stripe_fake.sessions[link.session_id]
    assert sent["setup_future_usage"] == "off_session" and sent["customer_creation"] == "always"
    session, intent = stripe_fake.complete_session(link.session_id)
    # The PaymentIntent's event may come first: the method waits on the checkout's row.
    for event_type, obj in (("payment_intent.succeeded", intent), ("checkout.session.completed", session)):
        inbox = record_event(container, clinic.id, event_type, obj)
        apply_payment_event(container, clinic.id, inbox, lambda *_: None, follow_up=lambda *_: None)
    with container.database.tenant_scope(clinic.id) as s:
        saved = s.execute(
            text(
                "SELECT status, customer_id, payment_method_id, card_saved_at, card_terms FROM payments "
                "WHERE checkout_session_id = :sid"
            ),
            {"sid": link.session_id},
        ).one()
    assert saved.status == "paid" and saved.customer_id == session["customer"]
    assert saved.payment_method_id == intent["payment_method"] and saved.card_saved_at == NOW
    assert saved.card_terms == terms


def test_the_card_is_saved_when_both_webhooks_are_applied_at_the_same_moment(
    container, stripe_fake, owner_engine
) -> None:
    """Stripe does not order its events: the two that save the card may reach two workers at once.  Before, the
    PaymentIntent's handler read the payment twice (by intent, then the appointment's checkout without an intent);
    a checkout completion committing between the two reads made both miss, and the card was never saved (seen in
    the e2e no-show test under load).  Each pair here starts together; every card must be saved."""
    clinic = Clinic(owner_engine)
    pairs: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = []
    for hour in range(30):
        appt, _ = visit(clinic, NOW + timedelta(days=2, hours=hour), "pending_deposit")
        link = deposit_checkout(
            container, owner_engine, clinic, appt, "Test Spa will save this card for its no-show fee."
        )
        session, intent = stripe_fake.complete_session(link.session_id)
        pairs.append((link.session_id, appt, session, intent))

    for session_id, _appt, session, intent in pairs:
        inboxes = [
            record_event(container, clinic.id, "checkout.session.completed", session),
            record_event(container, clinic.id, "payment_intent.succeeded", intent),
        ]
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def apply(inbox: int, start: threading.Barrier = start, errors: list[BaseException] = errors) -> None:
            try:
                start.wait(timeout=10)
                apply_payment_event(container, clinic.id, inbox, lambda *_: None, follow_up=lambda *_: None)
            except BaseException as exc:  # surfaced below, with the pair it belongs to
                errors.append(exc)

        threads = [threading.Thread(target=apply, args=(inbox,)) for inbox in inboxes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        with container.database.tenant_scope(clinic.id) as s:
            saved = s.execute(
                text(
                    "SELECT status, payment_method_id, payment_intent_id, card_saved_at FROM payments "
                    "WHERE checkout_session_id = :sid"
                ),
                {"sid": session_id},
            ).one()
        assert saved.status == "paid" and saved.card_saved_at is not None
        assert saved.payment_method_id == intent["payment_method"], f"card lost for checkout {session_id}"
        assert saved.payment_intent_id == intent["id"]


def test_the_payment_intent_waits_for_a_checkout_completion_in_flight(container, stripe_fake, owner_engine) -> None:
    """The same race, made deterministic: while a checkout completion holds the appointment (it has not yet
    recorded the intent), the PaymentIntent's handler waits; once the completion commits, it finds the payment by
    its intent and saves the card."""
    clinic = Clinic(owner_engine)
    appt, _ = visit(clinic, NOW + timedelta(days=3), "pending_deposit")
    link = deposit_checkout(container, owner_engine, clinic, appt, "Test Spa will save this card for its no-show fee.")
    _session, intent = stripe_fake.complete_session(link.session_id)
    inbox = record_event(container, clinic.id, "payment_intent.succeeded", intent)
    outcome: list[str] = []

    def apply_intent() -> None:
        applied = apply_payment_event(container, clinic.id, inbox, lambda *_: None, follow_up=lambda *_: None)
        outcome.append(applied.action)

    with container.database.tenant_scope(clinic.id) as completion:
        # What checkout.session.completed does, in its order: lock the appointment, then record the intent.
        completion.execute(text("SELECT id FROM appointments WHERE id = :id FOR UPDATE"), {"id": appt})
        applying = threading.Thread(target=apply_intent)
        applying.start()

        def waiting_on_the_appointment() -> bool:
            with owner_engine.connect() as conn:
                return bool(
                    conn.execute(
                        text("""SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                                AND query LIKE 'SELECT id FROM appointments WHERE id = % FOR UPDATE'""")
                    ).scalar()
                )

        wait_for(waiting_on_the_appointment, 10, what="the PaymentIntent's handler waiting on the appointment")
        assert not outcome
        completion.execute(
            text("UPDATE payments SET status = 'paid', payment_intent_id = :pi WHERE checkout_session_id = :sid"),
            {"pi": intent["id"], "sid": link.session_id},
        )
    applying.join(timeout=30)
    assert outcome == ["noted"]
    with container.database.tenant_scope(clinic.id) as s:
        saved = s.execute(
            text("SELECT payment_method_id, payment_intent_id FROM payments WHERE checkout_session_id = :sid"),
            {"sid": link.session_id},
        ).one()
    assert saved.payment_method_id == intent["payment_method"] and saved.payment_intent_id == intent["id"]


def deposit_checkout(container: Container, owner_engine, clinic: Clinic, appt: int, terms: str) -> CheckoutLink:  # type: ignore[no-untyped-def]
    """A $50 deposit's Checkout Session that saves the card with ``terms``, recorded as the deposit tool records it."""
    link = container.payments.create_deposit_checkout(
        DepositRequest(
            clinic_id=clinic.id,
            appointment_id=appt,
            amount_cents=5000,
            currency="usd",
            description="Deposit",
            expires_at=NOW + timedelta(hours=1),
            idempotency_key=f"deposit:{uuid.uuid4().hex}",
            success_url="https://x/ok",
            cancel_url="https://x/no",
            save_card_terms=terms,
        )
    )
    with owner_engine.begin() as conn:
        conn.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, provider, checkout_session_id, amount_cents,
                                          status, url, expires_at)
                    VALUES (:c, :a, 'stripe', :sid, 5000, 'pending', :url, :exp)"""),
            {"c": clinic.id, "a": appt, "sid": link.session_id, "url": link.url, "exp": link.expires_at},
        )
    return link


def record_event(container: Container, clinic_id: int, event_type: str, obj: dict[str, Any]) -> int:
    payload = {"type": event_type, "object": obj, "created": int(NOW.timestamp())}
    with container.database.tenant_scope(clinic_id) as session:
        return int(
            session.execute(
                text("""INSERT INTO inbox_events (clinic_id, source, provider_event_id, sender_key, payload, trace_id)
                        VALUES (:c, 'stripe', :e, 'stripe', CAST(:p AS jsonb), 't') RETURNING id"""),
                {"c": clinic_id, "e": "evt_" + uuid.uuid4().hex, "p": json.dumps(payload)},
            ).scalar_one()
        )


def due_fee(container: Container, stripe_fake: FakeStripeApi, owner_engine) -> tuple[Clinic, int]:  # type: ignore[no-untyped-def]
    """A no-show whose $75 fee is due, on a card the fake Stripe holds for the patient."""
    clinic = Clinic(owner_engine)
    set_policies(owner_engine, clinic, no_show_fee_cents=7500, fees_on_saved_card=True)
    appt, _ = visit(clinic, NOW - timedelta(hours=1))
    payment = deposit(owner_engine, clinic, appt, card=True)
    customer, method = "cus_" + uuid.uuid4().hex[:10], "pm_" + uuid.uuid4().hex[:10]
    stripe_fake.saved_cards[method] = customer
    with owner_engine.begin() as conn:
        conn.execute(
            text("UPDATE payments SET customer_id = :c, payment_method_id = :m, status = 'refunded' WHERE id = :id"),
            {"c": customer, "m": method, "id": payment},
        )
    step(container.database, clinic, appt, Transition.NO_SHOW, NOW)  # no deposit left to keep: the whole fee
    return clinic, appt


def charges_for(stripe_fake: FakeStripeApi, appointment_id: int) -> list[dict[str, Any]]:
    return [c for c in stripe_fake.charges.values() if c["metadata"]["appointment_id"] == str(appointment_id)]


def test_fee_is_charged_once_off_session_even_when_the_answer_is_lost(container, stripe_fake, owner_engine) -> None:
    clinic, appt = due_fee(container, stripe_fake, owner_engine)
    stripe_fake.lose_next_reply()  # Stripe charged, but the answer never arrived
    with pytest.raises(PaymentError) as exc:
        fees.charge_fee(container.database, container.payments, clinic.id, appt)
    assert exc.value.retryable and row(container.database, clinic, appt)["fee_status"] == "due"
    assert fees.charge_fee(container.database, container.payments, clinic.id, appt) == "charged"  # the retry
    assert fees.charge_fee(container.database, container.payments, clinic.id, appt) == "nothing"  # a duplicate
    (charge,) = charges_for(stripe_fake, appt)
    assert (charge["amount"], charge["customer"]) == (7500, stripe_fake.saved_cards[charge["payment_method"]])
    calls = [
        r
        for r in stripe_fake.requests_to("POST", "/v1/payment_intents")
        if dict(r.form_pairs()).get("metadata[appointment_id]") == str(appt)
    ]
    assert len(calls) == 2 and calls[0].header("Idempotency-Key") == calls[1].header("Idempotency-Key")
    assert calls[0].header("Idempotency-Key") == f"visit-fee:no_show:{appt}"
    stripe_fake.assert_clean()
    got = row(container.database, clinic, appt)
    assert (got["fee_status"], got["fee_payment_intent_id"]) == ("charged", charge["id"])


def test_a_declined_fee_is_failed_and_a_bank_wanting_the_patient_is_left_to_staff(
    container, stripe_fake, owner_engine
) -> None:
    clinic, appt = due_fee(container, stripe_fake, owner_engine)
    stripe_fake.card_declined_next()
    assert fees.charge_fee(container.database, container.payments, clinic.id, appt) == "failed"
    got = row(container.database, clinic, appt)
    assert got["fee_status"] == "failed" and "CardError" in got["fee_error"]
    clinic, appt = due_fee(container, stripe_fake, owner_engine)
    stripe_fake.authentication_required_next()
    assert fees.charge_fee(container.database, container.payments, clinic.id, appt) == "requires_action"
    assert charges_for(stripe_fake, appt) == []
