"""Deposits end to end: the real app over HTTP, a real Dramatiq worker, the offline dialogue policy, and the
Stripe, Google Calendar and Twilio fakes behind their official SDKs.

A patient texts to book a treatment that needs a deposit, confirms, gets a
Stripe Checkout link, pays (a ``checkout.session.completed`` signed with the
stripe SDK's own signing scheme, posted to /webhooks/stripe), and is texted a
confirmation; the provider's Google calendar gets one event, however often the
sync runs.  An expired checkout (or an elapsed hold) releases the slot and
tells the patient.  Tampered, stale and replayed webhooks change nothing.
Without Stripe keys the local test-mode page confirms through the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import stripe
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from medspa.devstack import free_port
from tests.fakes.google_api import FakeGoogleCalendarApi, google_error
from tests.fakes.stripe_api import FakeStripeApi, checkout_event
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import GLOW_NUMBER, STRIPE_WEBHOOK_SECRET, Stack, running_stack, serve_app_in_thread
from worker.integrations.google_calendar import event_id_for

STRIPE_KEY = "sk_test_x"
LA = ZoneInfo("America/Los_Angeles")
CALENDARS = [
    "maya.chen@glowmedspa.example",
    "jordan.lee@glowmedspa.example",
    "sofia.ramirez@glowmedspa.example",
    "priya.nair@glowmedspa.example",
]
HOLIDAYS = {date(2026, 11, 26), date(2026, 12, 25), date(2027, 1, 1)}


def _phone() -> str:
    return random_phone()


def _booking_day(now: datetime, weeks_ahead: int) -> date:
    """A Tuesday-Friday at least ``weeks_ahead`` weeks out (both Botox providers work; no seeded bookings)."""
    day = now.astimezone(LA).date() + timedelta(days=7 * weeks_ahead)
    while day.weekday() not in (1, 2, 3, 4) or day in HOLIDAYS:
        day += timedelta(days=1)
    return day


def _service_account_file(tmp_path: Path, google: FakeGoogleCalendarApi) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "medspa-e2e",
                "private_key_id": "k1",
                "private_key": pem.decode(),
                "client_email": "agent@medspa-e2e.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": google.token_uri,
            }
        )
    )
    return path


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """The in-process worker exports its settings to os.environ (for get_settings()); put the environment back
    so later stacks don't inherit this test's Stripe/Google configuration."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from medspa.settings import get_settings

        get_settings.cache_clear()


@pytest.fixture
def deposit_stack(infra, tmp_path, restored_environ) -> Iterator[tuple[Stack, FakeStripeApi, FakeGoogleCalendarApi]]:  # type: ignore[no-untyped-def]
    with contextlib.ExitStack() as contexts:
        stripe_api = contexts.enter_context(FakeStripeApi(STRIPE_KEY))
        google = contexts.enter_context(FakeGoogleCalendarApi(CALENDARS, require_token=True))
        stack, _container = contexts.enter_context(
            running_stack(
                infra,
                tmp_path,
                stripe_api_key=STRIPE_KEY,
                stripe_api_base=stripe_api.base_url,
                google_application_credentials=_service_account_file(tmp_path, google),
                google_calendar_api_base=google.base_url,
            )
        )
        stack.clock.set(datetime.now(UTC).replace(second=0, microsecond=0))
        yield stack, stripe_api, google


def _book_with_deposit(stack: Stack, phone: str, day: date, hour: int) -> tuple[int, str]:
    """Text the clinic to book Botox; confirm; return (appointment id, deposit link)."""
    stack.send_sms(GLOW_NUMBER, phone, f"Hi, can I book Botox on {day:%b} {day.day} at {hour - 12}pm?")
    [proposal] = stack.wait_replies(phone, 1)
    assert "Reply YES" in proposal, proposal
    stack.send_sms(GLOW_NUMBER, phone, "yes")
    replies = stack.wait_replies(phone, 2)
    assert "$50 deposit" in replies[1], replies[1]
    url = re.search(r"https?://\S+", replies[1])
    assert url is not None, replies[1]
    appointment = _appointment_of(stack, phone)
    assert appointment["status"] == "pending_deposit"
    assert appointment["starts_at"].astimezone(LA).replace(tzinfo=None) == datetime(day.year, day.month, day.day, hour)
    return int(appointment["id"]), url.group(0)


def _appointment_of(stack: Stack, phone: str) -> dict[str, Any]:
    with stack.database.tenant_scope(1) as session:
        return dict(
            session.execute(
                text(
                    """SELECT a.id, a.status, a.starts_at, a.calendar_sync, a.calendar_event_id, a.provider_id
               FROM appointments a JOIN clients c ON c.id = a.client_id
               WHERE c.phone_e164 = :p ORDER BY a.id DESC LIMIT 1"""
                ),
                {"p": phone},
            )
            .mappings()
            .one()
        )


def _session_for(stripe_api: FakeStripeApi, appointment_id: int) -> dict[str, Any]:
    [found] = [s for s in stripe_api.sessions.values() if s["metadata"]["appointment_id"] == str(appointment_id)]
    return found


def _post_stripe(stack: Stack, body: bytes, signature: str) -> httpx.Response:
    return stack.http.post(
        stack.base_url + "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def _signed(body: bytes, *, timestamp: int | None = None) -> str:
    """The Stripe-Signature header exactly as Stripe computes it, using the stripe SDK's own signing helper."""
    return stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_WEBHOOK_SECRET, timestamp)


def _events_for(google: FakeGoogleCalendarApi, appointment_id: int) -> list[tuple[str, str]]:
    event_id = event_id_for(appointment_id, 1)
    return [(cid, cal.events[event_id]["status"]) for cid, cal in google.calendars.items() if event_id in cal.events]


def _inbox_count(stack: Stack) -> int:
    with stack.database.tenant_scope(1) as session:
        return int(session.execute(text("SELECT count(*) FROM inbox_events WHERE source = 'stripe'")).scalar_one())


def test_patient_books_pays_and_is_confirmed_with_one_calendar_event(deposit_stack) -> None:  # type: ignore[no-untyped-def]
    stack, stripe_api, google = deposit_stack
    phone = _phone()
    day = _booking_day(stack.clock.now(), weeks_ahead=2)
    appointment_id, url = _book_with_deposit(stack, phone, day, 15)

    session = _session_for(stripe_api, appointment_id)
    assert url == session["url"]
    [create] = stripe_api.requests_to("POST", "/v1/checkout/sessions")
    assert create.header("Idempotency-Key") == f"deposit:{appointment_id}"
    stripe_api.assert_clean()
    assert _events_for(google, appointment_id) == []  # not on the calendar while only held

    # The first calendar insert fails (Google 500): the sync actor retries with backoff; the booking is unaffected.
    google.script(
        google_error(500, "backendError", "Backend Error"),
        when=lambda r: r.method == "POST" and r.path.endswith("/events"),
    )

    body = checkout_event("checkout.session.completed", session)
    paid = _post_stripe(stack, body, _signed(body))
    assert paid.status_code == 200, paid.text

    replies = stack.wait_replies(phone, 3)
    assert "$50 deposit is received" in replies[2] and "is confirmed" in replies[2], replies[2]
    assert _appointment_of(stack, phone)["status"] == "booked"
    wait_for(lambda: _appointment_of(stack, phone)["calendar_sync"] == "synced", 20, what="calendar sync")
    provider_calendar = [cid for cid, status in _events_for(google, appointment_id)]
    assert len(provider_calendar) == 1 and _events_for(google, appointment_id)[0][1] == "confirmed"
    failed_inserts = [s for r, s in google.exchanges if r.method == "POST" and r.path.endswith("/events") and s == 500]
    assert len(failed_inserts) == 1
    google.assert_clean()

    # The sync actor retried / redelivered (e.g. a worker died before recording "synced"): still one event.
    from worker.sending import enqueue

    with stack.database.tenant_scope(1) as db:
        db.execute(text("UPDATE appointments SET calendar_sync = 'pending' WHERE id = :id"), {"id": appointment_id})
    enqueue("sync_calendar_event", 1, appointment_id)
    enqueue("sync_calendar_event", 1, appointment_id)
    wait_for(lambda: _appointment_of(stack, phone)["calendar_sync"] == "synced", 20, what="calendar re-sync")
    stack.wait_idle()
    assert [cid for cid, _ in _events_for(google, appointment_id)] == provider_calendar
    # No second event for this appointment under another id, on any calendar.  (Counted by the appointment its
    # summary names: the calendar sweep may sync other tests' booked appointments of the shared database here.)
    ours = f"(appt #{appointment_id})"
    assert sum(ours in str(e.get("summary")) for c in google.calendars.values() for e in c.events.values()) == 1

    # A replayed webhook (same event, freshly signed or not) and a second delivery change nothing.
    before = _inbox_count(stack)
    assert _post_stripe(stack, body, _signed(body)).status_code == 200
    stack.wait_idle()
    assert _inbox_count(stack) == before
    assert len(stack.replies_to(phone)) == 3

    # Tampered body or stale signature: 403, nothing recorded.
    forged = checkout_event("checkout.session.completed", session)
    tampered = forged.replace(b'"amount_total":5000', b'"amount_total":1')
    assert tampered != forged
    assert _post_stripe(stack, tampered, _signed(forged)).status_code == 403
    stale_ts = int(datetime.now(UTC).timestamp()) - 301
    assert _post_stripe(stack, forged, _signed(forged, timestamp=stale_ts)).status_code == 403
    assert _post_stripe(stack, forged, "t=1,v1=deadbeef").status_code == 403
    assert _inbox_count(stack) == before


def test_expired_checkout_and_elapsed_hold_release_the_slot(deposit_stack) -> None:  # type: ignore[no-untyped-def]
    stack, stripe_api, google = deposit_stack
    first, second = _phone(), _phone()
    day = _booking_day(stack.clock.now(), weeks_ahead=3)
    appointment_id, _ = _book_with_deposit(stack, first, day, 16)

    # The checkout ends with the hold (its expiry is the hold's): Stripe says so once that time has come.
    stack.clock.set(stack.clock.now() + timedelta(minutes=61))
    session = _session_for(stripe_api, appointment_id)
    body = checkout_event("checkout.session.expired", session)
    assert _post_stripe(stack, body, _signed(body)).status_code == 200

    replies = stack.wait_replies(first, 3)
    assert "released the hold" in replies[2], replies[2]
    assert _appointment_of(stack, first)["status"] == "expired"

    # The slot is free again: another patient books the same time with the same provider and holds it ...
    other_id, _ = _book_with_deposit(stack, second, day, 16)
    assert _appointment_of(stack, second)["provider_id"] == _appointment_of(stack, first)["provider_id"]

    # ... until the hold elapses (Glow's policy: 60 minutes, by the worker's clock) and the scheduled job runs.
    from worker.sending import enqueue

    stack.clock.set(stack.clock.now() + timedelta(minutes=61))
    enqueue("expire_deposit_holds")
    replies = stack.wait_replies(second, 3)
    assert "released the hold" in replies[2], replies[2]
    assert _appointment_of(stack, second)["status"] == "expired"
    # An expired event arriving after the hold was already released is a no-op.
    late = checkout_event("checkout.session.expired", _session_for(stripe_api, other_id))
    assert _post_stripe(stack, late, _signed(late)).status_code == 200
    stack.wait_idle()
    assert len(stack.replies_to(second)) == 3
    assert _events_for(google, appointment_id) == [] and _events_for(google, other_id) == []


def test_local_test_mode_payment_confirms_through_the_same_path(infra, tmp_path, restored_environ) -> None:  # type: ignore[no-untyped-def]
    """No Stripe key: the deposit link is the dev page, whose Pay button feeds the same worker path."""
    from webhooks import dev_payments
    from webhooks.app import create_app

    no_integrations: dict[str, Any] = {
        "stripe_api_key": None,
        "stripe_api_base": None,
        "google_application_credentials": None,
        "google_calendar_api_base": None,
    }
    with running_stack(infra, tmp_path, **no_integrations) as (stack, container):
        assert container is not None and type(container.payments).__name__ == "LocalTestPayments"
        stack.clock.set(datetime.now(UTC).replace(second=0, microsecond=0))
        phone = _phone()
        day = _booking_day(stack.clock.now(), weeks_ahead=4)
        appointment_id, url = _book_with_deposit(stack, phone, day, 14)
        assert url.startswith(stack.base_url + "/dev/pay/cs_local_")

        # Serve the app with the dev payment routes (app.py adds them outside production; added here if not yet).
        app = create_app(stack.settings)
        if not any(getattr(r, "path", "") == "/dev/pay/{session_id}" for r in app.routes):
            app.router.routes.extend(dev_payments.routes())
        port = free_port()
        stop = serve_app_in_thread_with(app, port)
        try:
            page_url = url.replace(stack.base_url, f"http://127.0.0.1:{port}")
            page = httpx.get(page_url, timeout=10)
            assert page.status_code == 200 and "Deposit $50" in page.text and "<button" in page.text
            assert phone not in page.text
            assert httpx.get(page_url.replace("cs_local_", "cs_test_"), timeout=10).status_code == 404

            paid = httpx.post(page_url, timeout=10)
            assert paid.status_code == 200 and "Payment received" in paid.text
            replies = stack.wait_replies(phone, 3)
            assert "deposit is received" in replies[2] and "is confirmed" in replies[2], replies[2]
            assert _appointment_of(stack, phone)["status"] == "booked"

            again = httpx.post(page_url, timeout=10)  # paying twice: "already paid", nothing new
            assert again.status_code == 200 and "is paid" in again.text
            stack.wait_idle()
            assert len(stack.replies_to(phone)) == 3
            with stack.database.tenant_scope(1) as session:
                events = session.execute(
                    text(
                        "SELECT provider_event_id, status FROM inbox_events WHERE provider_event_id LIKE 'local:%' "
                        "AND payload->'object'->'metadata'->>'appointment_id' = :a"
                    ),
                    {"a": str(appointment_id)},
                ).all()
            assert [tuple(e) for e in events] == [(f"local:{url.rsplit('/', 1)[1]}", "processed")]
        finally:
            stop()


def serve_app_in_thread_with(app: Any, port: int) -> Any:
    """Like tests.support.stack.serve_app_in_thread, for an already built app."""
    import threading

    import uvicorn

    class _Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:
            pass

    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn-dev-pay", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="dev app to start")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


_ = serve_app_in_thread  # the stack's own server helper (kept imported for readers comparing the two)


def test_a_calendar_that_refuses_never_blocks_the_booking(deposit_stack) -> None:  # type: ignore[no-untyped-def]
    """A final Google error (403 forbidden): the sync actor records calendar_sync='failed'; the booking stands."""
    from worker.sending import enqueue

    stack, _stripe_api, google = deposit_stack
    start = datetime.combine(_booking_day(stack.clock.now(), weeks_ahead=5), datetime.min.time(), LA) + timedelta(
        hours=11
    )
    with stack.database.tenant_scope(1) as session:
        appointment_id = int(
            session.execute(
                text(
                    """INSERT INTO appointments (clinic_id, provider_id, service_id, starts_at, ends_at, blocked_until, status,
                   source_key, calendar_sync)
               SELECT 1, p.id, s.id, :start, :start + interval '30 minutes', :start + interval '40 minutes',
                      'booked', :key, 'pending'
               FROM providers p, services s WHERE p.slug = 'jordan-lee' AND s.slug = 'neurotoxin'
                 AND p.clinic_id = 1 AND s.clinic_id = 1 RETURNING id"""
                ),
                {"start": start, "key": "e2e-cal:" + uuid.uuid4().hex},
            ).scalar_one()
        )
    google.script(google_error(403, "forbidden", "Forbidden"), when=lambda r: r.path.endswith("/events"))

    enqueue("sync_calendar_event", 1, appointment_id)

    def state() -> tuple[str, str]:
        with stack.database.tenant_scope(1) as session:
            row = session.execute(
                text("SELECT status, calendar_sync FROM appointments WHERE id = :id"), {"id": appointment_id}
            ).one()
        return row[0], row[1]

    wait_for(lambda: state()[1] == "failed", 20, what="calendar_sync=failed")
    assert state() == ("booked", "failed")
    assert len([r for r in google.requests if r.path.endswith("/events")]) == 1  # not retried: 403 is final
