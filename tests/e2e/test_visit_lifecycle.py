"""The visit lifecycle end to end: staff commands (``medspa appointments complete|no-show``) as subprocesses, the
real app over HTTP, a real Dramatiq worker, Twilio and Stripe fakes behind their official SDKs.

- A completed visit's aftercare check-in and review request go out once each, at the right clinic-local time:
  not while the patient's evening quiet hours last, but at the first scan after 08:00 (the automations scan and
  the sender both read the stack's injected clock, as in ``tests/integration/test_automations.py``).
- A no-show whose patient saved a card at booking (Checkout ``setup_future_usage``, the card recorded from
  Stripe's signed webhooks) is charged the clinic's no-show fee once, off-session, although the charge actor's
  first answer from Stripe is lost and the actor is retried, and a duplicate message arrives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from domain.ports import DepositRequest
from domain.visits import VisitPolicy
from medspa.broker import SCHEDULED_QUEUE, message_for
from tests.e2e.test_cli_clinic import medspa
from tests.fakes.stripe_api import FakeStripeApi, checkout_event, payment_intent_event, stripe_signature_header
from tests.integration.test_automations import Clinic
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import STRIPE_WEBHOOK_SECRET, Stack, running_stack
from worker import automations, runtime
from worker.sending import enqueue_bulk_sends

LA = ZoneInfo("America/Los_Angeles")
STRIPE_KEY = "sk_test_visit_e2e"


@pytest.fixture(scope="module")
def visit_stack(infra, tmp_path_factory) -> Iterator[tuple[Stack, Any, FakeStripeApi]]:  # type: ignore[no-untyped-def]
    with (
        FakeStripeApi(STRIPE_KEY) as stripe_api,
        running_stack(
            infra,
            tmp_path_factory.mktemp("visit-stack"),
            stripe_api_key=STRIPE_KEY,
            stripe_api_base=stripe_api.base_url,
        ) as (stack, container),
    ):
        yield stack, container, stripe_api
        stack.clock.set(None)


def local(day: Any, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=LA).astimezone(UTC)


def texts_to(stack: Stack, phone: str) -> list[str]:
    return [m.body for m in list(stack.twilio.messages) if m.to == phone]


def test_completed_visit_gets_aftercare_and_a_review_request_at_the_right_local_time(
    visit_stack, infra, owner_engine
) -> None:
    stack, _, _ = visit_stack
    clinic = Clinic(owner_engine)
    slug = _slug(owner_engine, clinic)
    client_id, phone = clinic.client("Ava Late")  # opted in, marketing granted
    day = datetime.now(LA).date() - timedelta(days=3)
    starts = local(day, time(21, 0))  # an evening visit ending 21:30: its follow-ups fall due in quiet hours
    appt = clinic.appointment(client_id, starts, "booked", created_at=starts - timedelta(days=10))

    done = medspa(
        infra, "appointments", "complete", str(appt), "--clinic", slug, "--amount", "$450", "--notes", "Botox"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"appointment {appt}: completed")
    assert f"aftercare text due from {(starts + timedelta(hours=24, minutes=30)).astimezone(LA):%a %b %-d} 21:30" in (
        done.stdout
    )
    again = medspa(infra, "appointments", "complete", str(appt), "--clinic", slug)
    assert again.returncode == 0 and f"appointment {appt}: unchanged" in again.stdout

    def scan(moment: datetime) -> list[int]:
        stack.clock.set(moment)
        ids = automations.scan_clinic(stack.database, clinic.id, moment).outbox_ids
        enqueue_bulk_sends(clinic.id, ids)
        return ids

    ends = starts + timedelta(minutes=30)
    assert scan(ends + timedelta(hours=24)) == []  # 21:30 the next evening: quiet hours, nothing yet
    assert scan(local(day + timedelta(days=2), time(7, 55))) == []
    assert len(scan(local(day + timedelta(days=2), time(8, 0)))) == 1  # the aftercare check-in, at 08:00
    wait_for(lambda: len(texts_to(stack, phone)) == 1, 30, what="the aftercare text")
    assert "How are you feeling" in texts_to(stack, phone)[0]
    assert scan(ends + timedelta(hours=48)) == []  # the review request is due 21:30: deferred to the morning
    assert len(scan(local(day + timedelta(days=3), time(8, 0)))) == 1
    wait_for(lambda: len(texts_to(stack, phone)) == 2, 30, what="the review request")
    assert "review" in texts_to(stack, phone)[1]
    assert scan(local(day + timedelta(days=3), time(12, 0))) == []  # once each
    stack.wait_idle(clinic.id)
    assert len(texts_to(stack, phone)) == 2
    with stack.database.tenant_scope(clinic.id) as session:
        got = session.execute(
            text("SELECT status, amount_charged_cents, visit_summary FROM appointments WHERE id = :id"), {"id": appt}
        ).one()
    assert tuple(got) == ("completed", 45_000, "Botox")


def _slug(owner_engine, clinic: Clinic) -> str:  # type: ignore[no-untyped-def]
    with owner_engine.connect() as conn:
        return str(conn.execute(text("SELECT slug FROM clinics WHERE id = :c"), {"c": clinic.id}).scalar_one())


def _post_stripe(stack: Stack, body: bytes) -> None:
    response = stack.http.post(
        stack.base_url + "/webhooks/stripe",
        content=body,
        headers={
            "Stripe-Signature": stripe_signature_header(body, STRIPE_WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200, response.text


def test_no_show_fee_is_charged_once_to_the_card_saved_at_booking_when_the_actor_retries(
    visit_stack, infra, owner_engine
) -> None:
    stack, container, stripe_api = visit_stack
    clinic = Clinic(owner_engine)
    slug = _slug(owner_engine, clinic)
    policies = {"no_show_fee_cents": 7500, "fees_on_saved_card": True}
    with owner_engine.begin() as conn:
        conn.execute(
            text("UPDATE clinics SET policies = policies || CAST(:p AS jsonb) WHERE id = :c"),
            {"p": json.dumps(policies), "c": clinic.id},
        )
    client_id, _ = clinic.client("Nico Show")
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    appt = clinic.appointment(client_id, starts, "booked", created_at=starts - timedelta(days=4))

    # Booking time: the deposit's checkout asks to save the card for the fee, with the clinic's wording.
    terms = VisitPolicy.from_policies(policies).card_terms("Test Spa")
    link = container.payments.create_deposit_checkout(
        DepositRequest(
            clinic_id=clinic.id,
            appointment_id=appt,
            amount_cents=5000,
            currency="usd",
            description="Deposit: Botox at Test Spa",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            idempotency_key=f"deposit:{uuid.uuid4().hex}",
            success_url=stack.base_url + "/deposit/done",
            cancel_url=stack.base_url + "/deposit/cancelled",
            save_card_terms=terms,
        )
    )
    with stack.database.tenant_scope(clinic.id) as session:
        session.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id,
                                          amount_cents, status, url, expires_at)
                    VALUES (:c, :a, :client, 'stripe', :sid, 5000, 'pending', :url, :exp)"""),
            {
                "c": clinic.id,
                "a": appt,
                "client": client_id,
                "sid": link.session_id,
                "url": link.url,
                "exp": link.expires_at,
            },
        )
    session_obj, intent = stripe_api.complete_session(link.session_id)
    _post_stripe(stack, checkout_event("checkout.session.completed", session_obj))
    _post_stripe(stack, payment_intent_event(intent))

    def saved() -> bool:
        with stack.database.tenant_scope(clinic.id) as session:
            return bool(
                session.execute(
                    text("""SELECT card_saved_at IS NOT NULL AND payment_method_id = :pm FROM payments
                            WHERE checkout_session_id = :sid"""),
                    {"pm": intent["payment_method"], "sid": link.session_id},
                ).scalar()
            )

    wait_for(saved, 30, what="the saved card recorded from the webhooks")

    # The day of the visit: the patient never came.  Stripe's answer to the first charge attempt is lost.
    stripe_api.lose_next_reply()
    marked = medspa(infra, "appointments", "no-show", str(appt), "--clinic", slug)
    assert marked.returncode == 0, marked.stderr
    assert "deposit of $50 kept" in marked.stdout and "$25 no show fee charged" in marked.stdout

    def fee() -> tuple[str, str | None]:
        with stack.database.tenant_scope(clinic.id) as session:
            status, intent_id = session.execute(
                text("SELECT fee_status, fee_payment_intent_id FROM appointments WHERE id = :id"), {"id": appt}
            ).one()
        return str(status), intent_id

    wait_for(lambda: fee()[0] == "charged", 60, what="the retried fee charge")
    # A duplicate message for the same fee changes nothing.
    runtime.broker().enqueue(message_for("charge_visit_fee", SCHEDULED_QUEUE, clinic.id, appt))
    runtime.broker().join(SCHEDULED_QUEUE, timeout=30_000)
    charges = [c for c in stripe_api.charges.values() if c["metadata"]["appointment_id"] == str(appt)]
    assert len(charges) == 1 and charges[0]["amount"] == 2500 and fee()[1] == charges[0]["id"]
    assert (
        charges[0]["customer"] == session_obj["customer"] and charges[0]["payment_method"] == intent["payment_method"]
    )
    attempts = [
        r
        for r in stripe_api.requests_to("POST", "/v1/payment_intents")
        if dict(r.form_pairs()).get("metadata[appointment_id]") == str(appt)
    ]
    assert len(attempts) == 2  # the lost one and the actor's retry, with one key
    assert {r.header("Idempotency-Key") for r in attempts} == {f"visit-fee:no_show:{appt}"}
    stripe_api.assert_clean()
    repeat = medspa(infra, "appointments", "no-show", str(appt), "--clinic", slug)
    assert repeat.returncode == 0 and "unchanged" in repeat.stdout


def test_the_scheduled_end_of_day_job_texts_the_on_call_number_once(visit_stack, owner_engine) -> None:
    stack, _, _ = visit_stack
    clinic = Clinic(owner_engine)
    oncall = random_phone()
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE clinics SET oncall_phone = :p WHERE id = :c"), {"p": oncall, "c": clinic.id})
    client_id, _ = clinic.client("Una Resolved")
    day = datetime.now(LA).date() - timedelta(days=5)
    appt = clinic.appointment(
        client_id, local(day, time(10)), "confirmed", created_at=local(day, time(10)) - timedelta(days=9)
    )
    evening = local(day, time(19, 5))  # after the default 19:00 end of day
    stack.clock.set(evening)
    for _ in range(2):  # two slots of the scheduled job: one text
        runtime.broker().enqueue(message_for("close_visit_days", SCHEDULED_QUEUE))
        runtime.broker().join(SCHEDULED_QUEUE, timeout=60_000)
    wait_for(lambda: len(texts_to(stack, oncall)) == 1, 30, what="the end-of-day text")
    stack.wait_idle(clinic.id)
    (body,) = texts_to(stack, oncall)
    assert f"appointments {appt}" in body and "Una" not in body and "medspa staff attention" in body
