"""DbToolExecutor on real Postgres (seeded Glow MedSpa), with Stripe and Google Calendar behind their official SDKs
pointed at the local fakes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.auth.credentials import AnonymousCredentials
from sqlalchemy import text

from db.engine import Database
from domain.availability import parse_hours
from domain.conversation import AppointmentView
from tests.fakes.google_api import FakeGoogleCalendarApi
from tests.fakes.stripe_api import FakeStripeApi
from tests.support.phones import random_phone
from worker.appointments.store import UPCOMING_OF_CONVERSATION, upcoming_views
from worker.integrations.google_calendar import GoogleCalendar, build_calendar_service
from worker.integrations.stripe_payments import StripePayments
from worker.tools import DbToolExecutor

GLOW = 1
LA = ZoneInfo("America/Los_Angeles")
# Tuesday 2027-04-06, 10:00 in Los Angeles: far from the seeded appointments (which sit near the seeding date).
NOW = datetime(2027, 4, 6, 10, 0, tzinfo=LA).astimezone(UTC)
STRIPE_KEY = "sk_test_executor"
CALENDARS = [
    "maya.chen@glowmedspa.example",
    "jordan.lee@glowmedspa.example",
    "sofia.ramirez@glowmedspa.example",
    "priya.nair@glowmedspa.example",
]


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripeApi]:
    with FakeStripeApi(STRIPE_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def google_fake() -> Iterator[FakeGoogleCalendarApi]:
    with FakeGoogleCalendarApi(CALENDARS) as server:
        yield server


class Patient:
    def __init__(self, database: Database, *, name: str = "Test Patient") -> None:
        self.phone = random_phone()
        with database.tenant_scope(GLOW) as session:
            self.client_id = session.execute(
                text(
                    "INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (1, :p, :n, 'opted_in') RETURNING id"
                ),
                {"p": self.phone, "n": name},
            ).scalar_one()
            self.conversation_id = session.execute(
                text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (1, :c, 'sms') RETURNING id"),
                {"c": self.client_id},
            ).scalar_one()


@pytest.fixture()
def cleanup(database: Database) -> Iterator[list[Patient]]:
    patients: list[Patient] = []
    yield patients
    with database.tenant_scope(GLOW) as session:
        for p in patients:
            session.execute(text("DELETE FROM appointments WHERE client_id = :c"), {"c": p.client_id})


def make(
    database: Database,
    stripe_fake: FakeStripeApi,
    google_fake: FakeGoogleCalendarApi,
    cleanup: list[Patient],
    *,
    now: datetime = NOW,
    fence: int = 0,
    patient: Patient | None = None,
    upcoming: list[AppointmentView] | None = None,
) -> tuple[DbToolExecutor, Patient]:
    patient = patient or Patient(database)
    cleanup.append(patient)
    calendar = GoogleCalendar(build_calendar_service(AnonymousCredentials(), api_endpoint=google_fake.api_endpoint))
    executor = DbToolExecutor(
        database,
        clinic_id=GLOW,
        client_id=patient.client_id,
        conversation_id=patient.conversation_id,
        fence_version=fence,
        now=now,
        payments=StripePayments(STRIPE_KEY, api_base=stripe_fake.base_url),
        calendar=calendar,
        embedder=None,
        public_base_url="https://medspa.example",
        upcoming=upcoming,
    )
    return executor, patient


@pytest.fixture()
def tools(database, stripe_fake, google_fake, cleanup):  # noqa: ANN001, ANN201
    def build(**kwargs: Any) -> tuple[DbToolExecutor, Patient]:
        return make(database, stripe_fake, google_fake, cleanup, **kwargs)

    return build


def _appointments(database: Database, client_id: int) -> list[Any]:
    with database.tenant_scope(GLOW) as session:
        return session.execute(
            text(
                """SELECT a.id, s.slug AS service, p.slug AS provider, a.starts_at, a.ends_at, a.blocked_until, a.status,
                          a.hold_expires_at, a.source_key
                   FROM appointments a JOIN services s ON s.id = a.service_id JOIN providers p ON p.id = a.provider_id
                   WHERE a.client_id = :c ORDER BY a.id"""
            ),
            {"c": client_id},
        ).all()


# ------------------------------------------------------------------ catalogue and knowledge
def test_hours_json_shapes() -> None:
    hours = parse_hours(
        {
            "mon": [["09:00", "13:00"], ["14:00", "17:00"]],
            "tuesday": ["10:00", "18:00"],
            "wed": {"open": "09:00", "close": "12:00"},
            "thu": "08:00-16:00",
            "sun": [],
        }
    )
    assert [(h.weekday, h.start.hour, h.end.hour) for h in hours] == [
        (0, 9, 13),
        (0, 14, 17),
        (1, 10, 18),
        (2, 9, 12),
        (3, 8, 16),
    ]


def test_service_details_resolve_synonyms(tools) -> None:  # noqa: ANN001
    executor, _ = tools()
    details = executor.execute("get_service_details", {"service": "lip filler"})
    assert (
        details["service"] == "lip-filler" and details["price"] == "$750 per syringe" and details["deposit"] == "$100"
    )
    assert set(details["providers"]) == {"Dr. Maya Chen", "Jordan Lee"}
    assert executor.execute("get_service_details", {"service": "tox"})["service"] == "neurotoxin"
    missing = executor.execute("get_service_details", {"service": "tattoo removal"})
    assert "no treatment" in missing["error"] and "Lip filler" in missing["offered"]
    listing = executor.execute("list_services", {})
    assert len(listing["services"]) >= 9 and {"name", "price", "duration_min"} <= set(listing["services"][0])


def test_knowledge_search_full_text_when_no_embedder(tools) -> None:  # noqa: ANN001
    executor, _ = tools()
    result = executor.execute("search_knowledge", {"query": "where can I park"})
    assert result["results"][0]["slug"] == "location-parking" and result["results"][0]["title"]


# ------------------------------------------------------------------ availability
def test_availability_respects_hours_skills_lead_time_and_calendar(tools, google_fake) -> None:  # noqa: ANN001
    executor, _ = tools()
    # HydraFacial is only Sofia's, who does not work Tuesdays: nothing on Tuesday, widened to later days.
    hydra = executor.execute(
        "check_availability", {"service": "hydrafacial", "date_from": "2027-04-06", "date_to": "2027-04-06"}
    )
    assert hydra["slots"] and all(s["provider"] == "Sofia Ramirez" for s in hydra["slots"])
    assert all(not s["start"].startswith("2027-04-06") for s in hydra["slots"]) and "widened_to" in hydra["searched"]

    # Botox today: two hours' notice from 10:00, so nothing before 12:00 local.
    today = executor.execute(
        "check_availability", {"service": "botox", "date_from": "2027-04-06", "date_to": "2027-04-06"}
    )
    assert today["slots"] and min(s["start"] for s in today["slots"]) >= "2027-04-06T12:00"

    # A busy block in Dr. Chen's Google calendar (not in our database) hides her 15:00 on Wednesday.
    google_fake.add_busy(
        "maya.chen@glowmedspa.example", datetime(2027, 4, 7, 14, 45, tzinfo=LA), datetime(2027, 4, 7, 16, 0, tzinfo=LA)
    )
    wed = executor.execute(
        "check_availability",
        {
            "service": "botox",
            "date_from": "2027-04-07",
            "date_to": "2027-04-07",
            "preferred_time": "15:00",
            "provider": "Dr. Maya Chen",
        },
    )
    assert wed["slots"] and "2027-04-07T15:00" not in [s["start"] for s in wed["slots"]]
    jordan = executor.execute(
        "check_availability",
        {
            "service": "botox",
            "date_from": "2027-04-07",
            "date_to": "2027-04-07",
            "preferred_time": "15:00",
            "provider": "Jordan",
        },
    )
    assert {"start": "2027-04-07T15:00", "label": "Wed Apr 7, 3:00 PM", "provider": "Jordan Lee"} in jordan["slots"]

    wrong = executor.execute("check_availability", {"service": "hydrafacial", "provider": "Jordan Lee"})
    assert "does not do" in wrong["error"] and wrong["qualified_providers"] == ["Sofia Ramirez"]


# ------------------------------------------------------------------ booking
def test_book_with_deposit_is_idempotent_and_blocks_the_buffer(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    args = {"service": "botox", "start": "2027-04-08T15:00", "provider": None}
    first = executor.execute("book_appointment", args)
    assert first["ok"] and first["status"] == "pending_deposit" and first["deposit_required"] == "$50"
    again = executor.execute("book_appointment", args)
    assert again["appointment_id"] == first["appointment_id"]
    [row] = _appointments(database, patient.client_id)
    assert row.service == "neurotoxin" and row.provider == "maya-chen" and row.status == "pending_deposit"
    assert row.starts_at == datetime(2027, 4, 8, 15, 0, tzinfo=LA)
    assert row.ends_at - row.starts_at == timedelta(minutes=30) and row.blocked_until - row.ends_at == timedelta(
        minutes=10
    )
    assert row.hold_expires_at == NOW + timedelta(minutes=60)  # the clinic's deposit_hold_minutes
    assert row.source_key == f"conv:{patient.conversation_id}:neurotoxin:2027-04-08T15:00"


def test_booking_a_taken_time_offers_alternatives(tools) -> None:  # noqa: ANN001
    first, _ = tools()
    second, _ = tools()
    assert first.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-07T13:00"})["ok"]
    taken = second.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-07T13:00"})
    assert taken["error"] == "that time is not available"
    starts = [a["start"] for a in taken["alternatives"]]
    assert starts and "2027-04-07T13:00" not in starts and all(s.startswith("2027-04-0") for s in starts)


def test_two_patients_racing_for_one_slot_get_one_booking(tools, database) -> None:  # noqa: ANN001
    racers = [tools()[0] for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def book(executor: DbToolExecutor) -> None:
        barrier.wait()
        result = executor.execute(
            "book_appointment", {"service": "microneedling", "start": "2027-04-09T14:00", "provider": "Sofia Ramirez"}
        )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=book, args=(r,)) for r in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    winners = [r for r in results if r.get("ok")]
    losers = [r for r in results if "error" in r]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0]["error"] in {"slot just taken by another booking", "that time is not available"}
    assert losers[0]["alternatives"] and "2027-04-09T14:00" not in [a["start"] for a in losers[0]["alternatives"]]
    with database.tenant_scope(GLOW) as session:
        live = session.execute(
            text("""SELECT count(*) FROM appointments a JOIN providers p ON p.id = a.provider_id
                    WHERE p.slug = 'sofia-ramirez' AND a.starts_at = :t AND a.status IN ('pending_deposit','booked','confirmed')"""),
            {"t": datetime(2027, 4, 9, 14, 0, tzinfo=LA)},
        ).scalar_one()
    assert live == 1


def test_the_exclusion_constraint_is_the_last_guard(tools, database) -> None:  # noqa: ANN001
    """A row that appears between the availability check and the insert (simulated by a calendar-blind insert
    from another transaction holding the slot) still yields 'slot just taken', never a double booking."""
    executor, patient = tools()
    other = Patient(database)
    with database.tenant_scope(GLOW) as session:
        ids = dict(session.execute(text("SELECT slug, id FROM providers WHERE clinic_id = 1")).all())
        service = session.execute(text("SELECT id FROM services WHERE slug = 'chemical-peel'")).scalar_one()
    start = datetime(2027, 4, 8, 16, 0, tzinfo=LA)
    # Hold the slot in an open transaction: the executor's availability check can't see the uncommitted row,
    # its INSERT then waits on the constraint and fails once this commits.
    holder = database.engine.connect()
    tx = holder.begin()
    holder.execute(text("SELECT set_config('app.clinic_id', '1', true)"))
    holder.execute(
        text("""INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at, blocked_until, status)
                VALUES (1, :c, :p, :s, :start, :end, :end, 'booked')"""),
        {
            "c": other.client_id,
            "p": ids["sofia-ramirez"],
            "s": service,
            "start": start,
            "end": start + timedelta(minutes=45),
        },
    )
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            executor.execute(
                "book_appointment",
                {"service": "chemical peel", "start": "2027-04-08T16:00", "provider": "Sofia Ramirez"},
            )
        )
    )
    worker.start()
    worker.join(1.0)  # the insert is now blocked on the holder's row (or done, if it somehow did not conflict)
    tx.commit()
    holder.close()
    worker.join(30)
    try:
        assert result.get("error") == "slot just taken by another booking", result
        assert result["alternatives"]
        assert _appointments(database, patient.client_id) == []
    finally:
        with database.tenant_scope(GLOW) as session:
            session.execute(text("DELETE FROM appointments WHERE client_id = :c"), {"c": other.client_id})


def test_stale_turn_cannot_book(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools(fence=41)
    result = executor.execute("book_appointment", {"service": "botox", "start": "2027-04-08T11:00"})
    assert "stale turn" in result["error"]
    assert _appointments(database, patient.client_id) == []


def test_propose_validates_and_normalises(tools) -> None:  # noqa: ANN001
    executor, _ = tools()
    proposal = executor.execute("propose_action", {"action": "book", "service": "lips", "start": "2027-04-08T13:00"})
    assert (
        proposal["service"] == "lip-filler"
        and proposal["provider"] == "maya-chen"
        and proposal["start"] == "2027-04-08T13:00"
    )
    assert "Thu Apr 8, 1:00 PM" in proposal["summary"] and "$100 deposit" in proposal["summary"]
    sunday = executor.execute("propose_action", {"action": "book", "service": "botox", "start": "2027-04-11T13:00"})
    assert sunday["error"] == "that time is not available"
    past = executor.execute("propose_action", {"action": "book", "service": "botox", "start": "2027-04-05T13:00"})
    assert "past" in past["error"]


# ------------------------------------------------------------------ my appointments, reschedule, cancel, deposit
def test_patients_only_see_and_touch_their_own_appointments(tools, database) -> None:  # noqa: ANN001
    mine, me = tools()
    theirs, _ = tools()
    booked = theirs.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-08T11:00"})
    assert booked["ok"]
    assert mine.execute("get_my_appointments", {}) == {"appointments": []}
    for name, args in [
        ("cancel_appointment", {"appointment_id": booked["appointment_id"]}),
        ("reschedule_appointment", {"appointment_id": booked["appointment_id"], "new_start": "2027-04-08T15:00"}),
        ("create_deposit_link", {"appointment_id": booked["appointment_id"]}),
        ("propose_action", {"action": "cancel", "appointment_id": booked["appointment_id"]}),
    ]:
        assert "no appointment" in mine.execute(name, args)["error"], name
    listed = theirs.execute("get_my_appointments", {})["appointments"]
    assert [a["appointment_id"] for a in listed] == [booked["appointment_id"]]
    assert listed[0]["label"] == "Thu Apr 8, 11:00 AM" and listed[0]["status"] == "booked"


def test_my_appointments_answer_from_the_turns_snapshot_until_a_tool_may_have_changed_them(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-08T11:00"})
    assert booked["ok"]
    # What the pipeline passes: the list its snapshot read.  It differs from the database here, so the answer
    # shows which one answered; started and checked-in visits are in the list (the prompt shows them) but
    # cannot be moved or cancelled any more, so the tool leaves them out.
    start = NOW + timedelta(days=3)
    read = [
        AppointmentView(
            990_001, "Botox", "Maya Chen", NOW - timedelta(minutes=20), NOW + timedelta(minutes=10), "booked"
        ),
        AppointmentView(
            990_002, "Botox", "Maya Chen", NOW + timedelta(hours=1), NOW + timedelta(hours=2), "checked_in"
        ),
        AppointmentView(990_003, "Botox", "Maya Chen", start, start + timedelta(minutes=30), "pending_deposit", 5000),
    ]
    turn, _ = tools(patient=patient, upcoming=read)
    listed = turn.execute("get_my_appointments", {})["appointments"]
    assert [(a["appointment_id"], a["deposit_due"]) for a in listed] == [(990_003, "$50")]
    turn.execute("list_services", {})  # reads only: the snapshot still stands
    assert [a["appointment_id"] for a in turn.execute("get_my_appointments", {})["appointments"]] == [990_003]
    assert turn.execute("update_profile", {"name": "Test Patient"})["ok"]  # may change what the list shows
    listed = turn.execute("get_my_appointments", {})["appointments"]
    assert [a["appointment_id"] for a in listed] == [booked["appointment_id"]]  # the database's, read again


def test_the_upcoming_list_keeps_a_visit_for_an_hour_after_its_start_by_the_turns_clock(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-08T11:00"})
    starts = datetime(2027, 4, 8, 11, 0, tzinfo=LA)

    def upcoming_at(now: datetime | None) -> list[int]:
        with database.tenant_connection(GLOW) as conn:
            rows = conn.execute(UPCOMING_OF_CONVERSATION, {"id": patient.conversation_id, "now": now}).fetchall()
        return [view.id for view in upcoming_views(rows)]

    assert upcoming_at(starts + timedelta(minutes=59)) == [booked["appointment_id"]]
    assert upcoming_at(starts + timedelta(minutes=61)) == []
    assert upcoming_at(None) == [booked["appointment_id"]]  # the server's clock (today, before 2027)
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": booked["appointment_id"]}
        )
    assert upcoming_at(starts) == []


def test_reschedule_moves_the_appointment(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "chemical peel", "start": "2027-04-08T12:00"})
    moved = executor.execute(
        "reschedule_appointment", {"appointment_id": booked["appointment_id"], "new_start": "2027-04-09T15:00"}
    )
    assert moved["ok"] and moved["label"] == "Fri Apr 9, 3:00 PM" and moved["from"] == "Thu Apr 8, 12:00 PM"
    [row] = _appointments(database, patient.client_id)
    assert row.starts_at == datetime(2027, 4, 9, 15, 0, tzinfo=LA) and row.blocked_until == row.ends_at + timedelta(
        minutes=10
    )


def _live_at(database: Database, client_id: int, start: datetime) -> list[int]:
    """The patient's appointments that hold ``start`` (what the patient was told they have)."""
    return [
        r.id
        for r in _appointments(database, client_id)
        if r.starts_at == start and r.status in ("pending_deposit", "booked", "confirmed")
    ]


def test_booking_a_time_again_after_cancelling_it_books_it_and_a_retry_of_that_books_nothing_more(
    tools, database
) -> None:  # noqa: ANN001
    executor, patient = tools()
    args = {"service": "chemical peel", "start": "2027-04-08T12:00"}
    noon = datetime(2027, 4, 8, 12, 0, tzinfo=LA)
    first = executor.execute("book_appointment", args)
    assert first["ok"]
    assert executor.execute("cancel_appointment", {"appointment_id": first["appointment_id"]})["ok"]

    # The same conversation, service and time as the cancelled booking: a new booking, not the cancelled one.
    again = executor.execute("book_appointment", args)
    assert again["ok"] and again["appointment_id"] != first["appointment_id"] and again["start"] == args["start"]
    assert _live_at(database, patient.client_id, noon) == [again["appointment_id"]]

    # A retry of that call (the model's, or the turn redelivered to a fresh executor) answers with it.
    retried, _ = tools(patient=patient)
    for retry in (executor, retried):
        assert retry.execute("book_appointment", args)["appointment_id"] == again["appointment_id"]
    statuses = {r.id: r.status for r in _appointments(database, patient.client_id)}
    assert statuses == {first["appointment_id"]: "cancelled", again["appointment_id"]: again["status"]}


def test_booking_a_time_again_after_moving_away_from_it_books_it_and_a_retry_of_that_books_nothing_more(
    tools, database
) -> None:  # noqa: ANN001
    executor, patient = tools()
    args = {"service": "chemical peel", "start": "2027-04-08T13:00"}
    one_pm, friday = datetime(2027, 4, 8, 13, 0, tzinfo=LA), datetime(2027, 4, 9, 15, 0, tzinfo=LA)
    first = executor.execute("book_appointment", args)
    moved = executor.execute(
        "reschedule_appointment", {"appointment_id": first["appointment_id"], "new_start": "2027-04-09T15:00"}
    )
    assert first["ok"] and moved["ok"]

    # Thursday 13:00 again: booked there, not answered with the visit that now sits on Friday.
    again = executor.execute("book_appointment", args)
    assert again["ok"] and again["appointment_id"] != first["appointment_id"] and again["start"] == args["start"]
    assert _live_at(database, patient.client_id, one_pm) == [again["appointment_id"]]
    assert _live_at(database, patient.client_id, friday) == [first["appointment_id"]]

    retried, _ = tools(patient=patient)
    for retry in (executor, retried):
        assert retry.execute("book_appointment", args)["appointment_id"] == again["appointment_id"]
    assert len(_appointments(database, patient.client_id)) == 2


def test_cancel_explains_the_policy_and_refunds_or_keeps_the_deposit(tools, database, stripe_fake) -> None:  # noqa: ANN001
    early, patient = tools()
    booked = early.execute("book_appointment", {"service": "botox", "start": "2027-04-09T11:00"})
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id, payment_intent_id,
                        amount_cents, status, url, expires_at)
                    VALUES (1, :a, :c, 'stripe', :sid, 'pi_test_paid', 5000, 'paid', 'https://pay', now())"""),
            {"a": booked["appointment_id"], "c": patient.client_id, "sid": "cs_test_" + uuid.uuid4().hex},
        )
    proposal = early.execute("propose_action", {"action": "cancel", "appointment_id": booked["appointment_id"]})
    assert proposal["late"] is False and "no fee" in proposal["summary"]
    cancelled = early.execute("cancel_appointment", {"appointment_id": booked["appointment_id"], "reason": "sick"})
    assert cancelled["ok"] and cancelled["late"] is False and cancelled["deposit"] == "$50 deposit refunded"
    refund_requests = stripe_fake.requests_to("POST", "/v1/refunds")
    assert refund_requests and refund_requests[-1].header("Idempotency-Key") == f"refund:{booked['appointment_id']}"
    assert [r.status for r in _appointments(database, patient.client_id)] == ["cancelled"]

    # Inside the window with no deposit paid: the whole late fee, and no word about a deposit nobody paid.
    late_clock = datetime(2027, 4, 9, 8, 0, tzinfo=LA).astimezone(UTC)
    booker, other = tools()
    rebooked = booker.execute("book_appointment", {"service": "botox", "start": "2027-04-09T17:00"})
    late, _ = tools(now=late_clock, patient=other)
    result = late.execute("cancel_appointment", {"appointment_id": rebooked["appointment_id"]})
    assert result["late"] is True and result["fee"] == "$50" and "deposit" not in result["policy"]

    # Inside the window with the $50 deposit paid: kept, and it counts toward the $50 fee (the late-cancel step
    # charges nothing more), so the patient is told nothing more is due, before and after, not $50 on top.
    payer, third = tools()
    paid = payer.execute("book_appointment", {"service": "botox", "start": "2027-04-09T18:00"})
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id, payment_intent_id,
                        amount_cents, status, url, expires_at)
                    VALUES (1, :a, :c, 'stripe', :sid, 'pi_test_late', 5000, 'paid', 'https://pay', now())"""),
            {"a": paid["appointment_id"], "c": third.client_id, "sid": "cs_test_" + uuid.uuid4().hex},
        )
    covered, _ = tools(now=late_clock, patient=third)
    quoted = covered.execute("propose_action", {"action": "cancel", "appointment_id": paid["appointment_id"]})
    assert "the $50 deposit is kept and covers it, so nothing more is due" in quoted["summary"]
    done = covered.execute("cancel_appointment", {"appointment_id": paid["appointment_id"]})
    assert done["late"] is True and done["fee"] is None and "nothing more is due" in done["policy"]
    with database.tenant_scope(GLOW) as session:
        kept = session.execute(
            text("SELECT status FROM payments WHERE appointment_id = :a"), {"a": paid["appointment_id"]}
        ).scalar_one()
    assert kept == "kept"


@pytest.fixture()
def keeps_early_deposits(owner_engine):  # noqa: ANN001, ANN201
    """Glow, for one test, keeps the deposit even when the patient cancels well ahead (issue 15's divergence)."""
    with owner_engine.begin() as conn:
        conn.execute(
            text(
                """UPDATE clinics SET policies = policies || '{"deposit_refund_outside_window": false}'::jsonb
                   WHERE id = 1"""
            )
        )
    yield
    with owner_engine.begin() as conn:
        conn.execute(
            text(
                """UPDATE clinics SET policies = policies || '{"deposit_refund_outside_window": true}'::jsonb
                   WHERE id = 1"""
            )
        )


def test_cancel_honours_a_clinic_that_keeps_early_deposits(  # noqa: ANN001
    tools, database, stripe_fake, keeps_early_deposits
) -> None:
    """The agent's cancel follows the clinic's deposit settings, like the payments worker and the staff CLI: a
    clinic that keeps early-cancel deposits is not refunded when the patient cancels through the agent."""
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "botox", "start": "2027-04-09T11:00"})
    intent = "pi_test_keep_" + uuid.uuid4().hex[:8]
    with database.tenant_scope(GLOW) as session:
        session.execute(
            text("""INSERT INTO payments (clinic_id, appointment_id, client_id, provider, checkout_session_id, payment_intent_id,
                        amount_cents, status, url, expires_at)
                    VALUES (1, :a, :c, 'stripe', :sid, :pi, 5000, 'paid', 'https://pay', now())"""),
            {"a": booked["appointment_id"], "c": patient.client_id, "sid": "cs_test_" + uuid.uuid4().hex, "pi": intent},
        )
    proposal = executor.execute("propose_action", {"action": "cancel", "appointment_id": booked["appointment_id"]})
    assert proposal["late"] is False and "refunded" not in proposal["summary"] and "kept" in proposal["summary"]
    cancelled = executor.execute("cancel_appointment", {"appointment_id": booked["appointment_id"]})
    assert cancelled["ok"] and cancelled["late"] is False and "kept" in cancelled["policy"]
    assert "deposit" not in cancelled or "refunded" not in cancelled["deposit"]
    refunds = [
        r
        for r in stripe_fake.requests_to("POST", "/v1/refunds")
        if r.header("Idempotency-Key") == f"refund:{booked['appointment_id']}"
    ]
    assert refunds == []
    with database.tenant_scope(GLOW) as session:
        status = session.execute(
            text("SELECT status FROM payments WHERE appointment_id = :a"), {"a": booked["appointment_id"]}
        ).scalar_one()
    assert status == "kept"


def test_deposit_link_through_stripe_is_created_once(tools, database, stripe_fake) -> None:  # noqa: ANN001
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "lip filler", "start": "2027-04-08T14:00"})
    link = executor.execute("create_deposit_link", {"appointment_id": booked["appointment_id"]})
    assert link["ok"] and link["url"].startswith("http") and link["amount"] == "$100"
    again = executor.execute("create_deposit_link", {"appointment_id": booked["appointment_id"]})
    assert again["url"] == link["url"]  # the same Checkout Session (stored row, or Stripe's idempotent replay)
    sessions = [
        r
        for r in stripe_fake.requests_to("POST", "/v1/checkout/sessions")
        if r.header("Idempotency-Key") == f"deposit:{booked['appointment_id']}"
    ]
    assert 1 <= len(sessions) <= 2
    with database.tenant_scope(GLOW) as session:
        rows = session.execute(
            text("SELECT amount_cents, status FROM payments WHERE appointment_id = :a"), {"a": booked["appointment_id"]}
        ).all()
    assert [(r.amount_cents, r.status) for r in rows] == [(10000, "pending")]
    no_deposit = executor.execute("book_appointment", {"service": "hydrafacial", "start": "2027-04-09T13:00"})
    assert (
        "does not need a deposit"
        in executor.execute("create_deposit_link", {"appointment_id": no_deposit["appointment_id"]})["error"]
    )


def test_update_profile_and_handoff(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    assert executor.execute("update_profile", {"name": "Ana Ruiz", "email": "ana@example.com"}) == {
        "ok": True,
        "saved": ["name", "email"],
    }
    with database.tenant_scope(GLOW) as session:
        row = session.execute(text("SELECT name, email FROM clients WHERE id = :c"), {"c": patient.client_id}).one()
    assert (row.name, row.email) == ("Ana Ruiz", "ana@example.com")
    assert executor.execute("handoff_to_staff", {"reason": "complaint", "urgency": "normal"})["handoff"] is True
    assert "invalid arguments" in executor.execute("update_profile", {"email": "nope"})["error"]


# ------------------------------------------------------------------ screening (issue 14)
def _said(database: Database, patient: Patient, *texts: str) -> None:
    """The patient's messages, as the pipeline records them before the turn runs."""
    with database.tenant_scope(GLOW) as session:
        for seq, body in enumerate(texts, 1):
            session.execute(
                text(
                    """INSERT INTO messages (clinic_id, conversation_id, direction, role, body, inbound_seq, channel)
                       VALUES (1, :conv, 'inbound', 'user', :body, :seq, 'sms')"""
                ),
                {"conv": patient.conversation_id, "body": body, "seq": seq},
            )


def test_a_contraindicated_service_is_never_offered_proposed_or_booked(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    _said(database, patient, "hi! I'm 4 months pregnant", "can I get botox friday?")
    for name, args in (
        ("check_availability", {"service": "botox", "date_from": "2027-04-08"}),
        ("propose_action", {"action": "book", "service": "botox", "start": "2027-04-08T15:00"}),
        ("book_appointment", {"service": "botox", "start": "2027-04-08T15:00"}),
    ):
        result = executor.execute(name, args)
        assert result["error"].startswith("screening: Botox / Dysport is not offered"), name
        screening = result["screening"]
        assert screening["conditions"] == ["pregnancy"] and "pregnant" in screening["position"]
        assert screening["suggest"] == ["HydraFacial", "Consultation"]
    assert _appointments(database, patient.client_id) == []
    details = executor.execute("get_service_details", {"service": "botox"})
    assert details["screening"]["offered_to_this_patient"] is False
    assert any(c["condition"] == "pregnancy" for c in details["contraindications"])
    # the safe alternative is offered as usual
    assert executor.execute("check_availability", {"service": "hydrafacial", "date_from": "2027-04-08"})["slots"]
    listing = {s["name"]: s["not_for"] for s in executor.execute("list_services", {})["services"]}
    assert "pregnancy" in listing["Botox / Dysport"] and "pregnancy" not in listing["HydraFacial"]


def test_a_revoked_condition_no_longer_screens(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    _said(database, patient, "I'm pregnant", "update: I had the baby and I'm not breastfeeding")
    assert "error" not in executor.execute("check_availability", {"service": "botox", "date_from": "2027-04-08"})


def test_moving_an_appointment_is_screened_too(tools, database) -> None:  # noqa: ANN001
    executor, patient = tools()
    booked = executor.execute("book_appointment", {"service": "botox", "start": "2027-04-08T15:00"})
    assert booked["ok"]
    _said(database, patient, "just found out I'm pregnant")
    fresh, _ = tools(patient=patient)  # the next turn's executor reads the new message
    result = fresh.execute(
        "reschedule_appointment", {"appointment_id": booked["appointment_id"], "new_start": "2027-04-09T11:00"}
    )
    assert result["error"].startswith("screening:")
