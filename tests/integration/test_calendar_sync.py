"""calendar_sync against the real database and the Google Calendar fake (through google-api-python-client).

Covers: deterministic event ids (a retried sync never duplicates), reschedule
(patch; moving to another provider moves the event), cancel (delete), errors
(retryable ones leave the row pending, then succeed; a final one is recorded as
'failed' and the booking stands), database-only mode, that availability
subtracts the provider's Google free/busy, and that a move is not blocked by the
moved appointment's own synced event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from sqlalchemy import text

from db.engine import Database
from domain.ports import CalendarError
from tests.fakes.google_api import FakeGoogleCalendarApi
from tests.support.phones import random_phone
from worker.calendar_sync import (
    CALENDAR_BACKOFF_MS,
    AppointmentFacts,
    calendar_retry_delay_ms,
    mark_failed,
    pending_appointments,
    plan_sync,
    sync_appointment,
)
from worker.integrations.console import LocalTestPayments
from worker.integrations.google_calendar import GoogleCalendar, build_calendar_service, event_id_for
from worker.tools import DbToolExecutor

MAYA = "maya.chen@glowmedspa.example"
JORDAN = "jordan.lee@glowmedspa.example"
SOFIA = "sofia.ramirez@glowmedspa.example"
CALENDARS = [MAYA, JORDAN, SOFIA, "priya.nair@glowmedspa.example"]
CLINIC = 1
_BASE = datetime(2036, 3, 4, 18, 0, tzinfo=UTC) + timedelta(days=7 * (uuid.uuid4().int % 40))  # Tuesdays
_counter = iter(range(10_000))


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendarApi]:
    with FakeGoogleCalendarApi(CALENDARS) as server:
        yield server


def _calendar(fake: FakeGoogleCalendarApi) -> GoogleCalendar:
    return GoogleCalendar(build_calendar_service(AnonymousCredentials(), api_endpoint=fake.api_endpoint, timeout=5))


def _provider_id(database: Database, slug: str) -> int:
    with database.tenant_scope(CLINIC) as session:
        return int(
            session.execute(
                text("SELECT id FROM providers WHERE slug = :s AND clinic_id = 1"), {"s": slug}
            ).scalar_one()
        )


def _appointment(database: Database, *, provider: str = "maya-chen", status: str = "booked") -> tuple[int, datetime]:
    n = next(_counter)
    start = _BASE + timedelta(days=7 * (n // 5), hours=n % 5)
    with database.tenant_scope(CLINIC) as session:
        appointment_id = session.execute(
            text(
                """INSERT INTO appointments (clinic_id, provider_id, service_id, starts_at, ends_at, blocked_until, status,
                   source_key, calendar_sync)
               SELECT 1, p.id, s.id, :start, :start + interval '30 minutes', :start + interval '40 minutes', :status,
                      :key, 'pending'
               FROM providers p, services s
               WHERE p.slug = :provider AND p.clinic_id = 1 AND s.slug = 'neurotoxin' AND s.clinic_id = 1
               RETURNING id"""
            ),
            {"start": start, "status": status, "key": "cal:" + uuid.uuid4().hex, "provider": provider},
        ).scalar_one()
    return int(appointment_id), start


def _row(database: Database, appointment_id: int) -> dict[str, object]:
    with database.tenant_scope(CLINIC) as session:
        return dict(
            session.execute(
                text("SELECT status, calendar_sync, calendar_event_id FROM appointments WHERE id = :id"),
                {"id": appointment_id},
            )
            .mappings()
            .one()
        )


def _touch(database: Database, appointment_id: int, **changes: object) -> None:
    sets = "".join(f"{k} = :{k}, " for k in changes)
    with database.tenant_scope(CLINIC) as session:
        session.execute(
            text(f"UPDATE appointments SET {sets}calendar_sync = 'pending', updated_at = now() WHERE id = :id"),
            {**changes, "id": appointment_id},
        )


def test_plan_is_pure_and_follows_the_status() -> None:
    start = datetime(2031, 1, 7, 18, 0, tzinfo=UTC)
    facts = AppointmentFacts(
        7, 1, "booked", "pending", start, start + timedelta(minutes=30), 3, MAYA, None, "Botox", (JORDAN,)
    )
    upsert = plan_sync(facts, calendar_enabled=True)
    assert upsert.action == "upsert" and upsert.calendar_id == MAYA
    assert upsert.event is not None and upsert.event.event_id == event_id_for(7, 1) == upsert.event_id
    assert upsert.remove_from == ()  # never written anywhere yet
    assert "Botox" in upsert.event.summary and upsert.event.start == start
    moved = plan_sync(replace(facts, calendar_event_id=event_id_for(7, 1)), calendar_enabled=True)
    assert moved.remove_from == (JORDAN,)
    assert plan_sync(replace(facts, status="pending_deposit"), calendar_enabled=True).action == "wait"
    assert plan_sync(replace(facts, calendar_sync="synced"), calendar_enabled=True).action == "skip"
    assert plan_sync(facts, calendar_enabled=False).action == "none"
    assert plan_sync(replace(facts, calendar_id=None), calendar_enabled=True).action == "none"
    assert plan_sync(replace(facts, status="cancelled"), calendar_enabled=True).action == "none"  # never written
    gone = plan_sync(replace(facts, status="cancelled", calendar_event_id=event_id_for(7, 1)), calendar_enabled=True)
    assert gone.action == "delete" and gone.calendar_id == MAYA


def test_booking_creates_one_event_even_when_the_sync_runs_again(
    database: Database, fake: FakeGoogleCalendarApi
) -> None:
    appointment_id, start = _appointment(database)
    calendar = _calendar(fake)

    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "synced"
    _touch(database, appointment_id)  # e.g. the message was redelivered after Google answered but before we recorded
    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "synced"

    event_id = event_id_for(appointment_id, CLINIC)
    assert list(fake.calendars[MAYA].events) == [event_id]
    event = fake.calendars[MAYA].events[event_id]
    assert event["start"] == {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert "(appt #" in event["summary"]
    on_maya = [r.method for r in fake.requests if "maya.chen" in r.path]
    assert on_maya == ["POST", "POST", "PATCH"]  # insert, insert → 409, patch
    # Once an id was recorded, a re-sync also makes sure no other provider calendar holds it (404s there).
    assert {r.method for r in fake.requests if "maya.chen" not in r.path} == {"DELETE"}
    calls = len(fake.requests)
    assert _row(database, appointment_id) == {
        "status": "booked",
        "calendar_sync": "synced",
        "calendar_event_id": event_id,
    }
    # Already synced: nothing to do, no calls.
    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "skipped"
    assert len(fake.requests) == calls
    fake.assert_clean()


def test_reschedule_patches_and_a_new_provider_gets_the_event(database: Database, fake: FakeGoogleCalendarApi) -> None:
    appointment_id, start = _appointment(database)
    calendar = _calendar(fake)
    sync_appointment(database, calendar, CLINIC, appointment_id)
    event_id = event_id_for(appointment_id, CLINIC)

    later = start + timedelta(days=1)
    _touch(
        database,
        appointment_id,
        starts_at=later,
        ends_at=later + timedelta(minutes=30),
        blocked_until=later + timedelta(minutes=40),
    )
    sync_appointment(database, calendar, CLINIC, appointment_id)
    assert fake.calendars[MAYA].events[event_id]["start"] == {"dateTime": later.strftime("%Y-%m-%dT%H:%M:%SZ")}

    _touch(database, appointment_id, provider_id=_provider_id(database, "jordan-lee"))
    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "synced"
    assert fake.calendars[MAYA].events[event_id]["status"] == "cancelled"
    assert fake.calendars[JORDAN].events[event_id]["status"] == "confirmed"
    fake.assert_clean()


def test_cancel_deletes_the_event(database: Database, fake: FakeGoogleCalendarApi) -> None:
    appointment_id, _ = _appointment(database)
    calendar = _calendar(fake)
    sync_appointment(database, calendar, CLINIC, appointment_id)
    _touch(database, appointment_id, status="cancelled")

    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "deleted"

    assert fake.calendars[MAYA].events[event_id_for(appointment_id, CLINIC)]["status"] == "cancelled"
    assert _row(database, appointment_id)["calendar_sync"] == "synced"
    # Deleting again (a retry) is fine: Google answers 410, the adapter treats it as done.
    _touch(database, appointment_id)
    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "deleted"


def test_retryable_errors_leave_it_pending_then_succeed(database: Database, fake: FakeGoogleCalendarApi) -> None:
    appointment_id, _ = _appointment(database)
    calendar = _calendar(fake)
    fake.server_error_next()

    with pytest.raises(CalendarError) as caught:
        sync_appointment(database, calendar, CLINIC, appointment_id)
    assert caught.value.retryable
    assert calendar_retry_delay_ms(0, caught.value) == CALENDAR_BACKOFF_MS[0]
    row = _row(database, appointment_id)
    assert (row["status"], row["calendar_sync"]) == ("booked", "pending")  # the booking is untouched
    assert row["calendar_event_id"] == event_id_for(appointment_id, CLINIC)  # claimed before the call

    assert sync_appointment(database, calendar, CLINIC, appointment_id) == "synced"
    assert len(fake.calendars[MAYA].events) == 1


def test_final_errors_are_recorded_as_failed(database: Database, fake: FakeGoogleCalendarApi) -> None:
    appointment_id, _ = _appointment(database)
    # The provider's calendar is unknown to Google: 404, not retryable.
    with FakeGoogleCalendarApi([]) as empty, pytest.raises(CalendarError) as caught:
        sync_appointment(database, _calendar(empty), CLINIC, appointment_id)
    assert not caught.value.retryable
    assert calendar_retry_delay_ms(0, caught.value) is None
    assert calendar_retry_delay_ms(len(CALENDAR_BACKOFF_MS), CalendarError("x", retryable=True)) is None
    mark_failed(database, CLINIC, appointment_id)
    assert _row(database, appointment_id)["calendar_sync"] == "failed"
    assert _row(database, appointment_id)["status"] == "booked"


def test_database_only_and_deposit_holds(database: Database, fake: FakeGoogleCalendarApi) -> None:
    appointment_id, _ = _appointment(database)
    assert sync_appointment(database, None, CLINIC, appointment_id) == "none"
    assert _row(database, appointment_id)["calendar_sync"] == "none"

    held, _ = _appointment(database, status="pending_deposit")
    assert sync_appointment(database, _calendar(fake), CLINIC, held) == "waiting"
    assert _row(database, held)["calendar_sync"] == "pending" and fake.requests == []


def test_pending_sweep_lists_due_rows(database: Database) -> None:
    appointment_id, _ = _appointment(database)
    held, _ = _appointment(database, status="pending_deposit")
    with database.tenant_scope(CLINIC) as session:
        session.execute(
            text("UPDATE appointments SET updated_at = now() - interval '1 minute' WHERE id IN (:a, :b)"),
            {"a": appointment_id, "b": held},
        )
    due = pending_appointments(database, CLINIC, limit=10_000)
    assert appointment_id in due and held not in due
    assert appointment_id not in pending_appointments(database, CLINIC, settled_s=3600, limit=10_000)


def test_availability_subtracts_google_busy(database: Database, fake: FakeGoogleCalendarApi) -> None:
    """The tool executor asks Google free/busy: a provider's external event removes that slot."""
    day = _BASE + timedelta(days=7 * 30)  # a Tuesday no other test books
    local_day = day.date().isoformat()

    def offered() -> set[tuple[str, str]]:
        executor = DbToolExecutor(
            database,
            clinic_id=CLINIC,
            client_id=0,
            conversation_id=0,
            fence_version=0,
            now=day - timedelta(days=2),
            payments=LocalTestPayments("http://127.0.0.1:9"),
            calendar=_calendar(fake),
            embedder=None,
            public_base_url="http://127.0.0.1:9",
        )
        result = executor.execute(
            "check_availability",
            {
                "service": "Botox",
                "date_from": local_day,
                "date_to": local_day,
                "preferred_time": "14:00",
            },
        )
        assert "error" not in result, result
        return {(s["start"], s["provider"]) for s in result["slots"]}

    before = offered()
    assert (f"{local_day}T14:00", "Dr. Maya Chen") in before or (f"{local_day}T14:00", "Jordan Lee") in before
    two_pm = datetime.fromisoformat(f"{local_day}T14:00").replace(tzinfo=_la())
    for calendar_id in (MAYA, JORDAN):
        fake.add_busy(calendar_id, two_pm - timedelta(minutes=30), two_pm + timedelta(hours=1))
    after = offered()
    assert not any(start == f"{local_day}T14:00" for start, _ in after)
    assert fake.requests_to("POST", "/calendar/v3/freeBusy")
    fake.assert_clean()


def _la():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/Los_Angeles")


# ---------------------------------------------------------------- a move and the appointment's own event
class _Patient:
    """A patient of Glow with an SMS conversation, using the agent's tools with Google Calendar behind the fake."""

    def __init__(self, database: Database, fake: FakeGoogleCalendarApi, day: date) -> None:
        self.database = database
        with database.tenant_scope(CLINIC) as session:
            self.client_id = int(
                session.execute(
                    text(
                        "INSERT INTO clients (clinic_id, phone_e164, name, consent_state) "
                        "VALUES (1, :p, 'Moe Ving', 'opted_in') RETURNING id"
                    ),
                    {"p": random_phone()},
                ).scalar_one()
            )
            conversation_id = int(
                session.execute(
                    text(
                        "INSERT INTO conversations (clinic_id, client_id, channel) VALUES (1, :c, 'sms') RETURNING id"
                    ),
                    {"c": self.client_id},
                ).scalar_one()
            )
        self.tools = DbToolExecutor(
            database,
            clinic_id=CLINIC,
            client_id=self.client_id,
            conversation_id=conversation_id,
            fence_version=0,
            now=datetime.combine(day - timedelta(days=2), time(10), tzinfo=_la()),
            payments=LocalTestPayments("http://127.0.0.1:9"),
            calendar=_calendar(fake),
            embedder=None,
            public_base_url="http://127.0.0.1:9",
        )

    def row(self, appointment_id: int) -> Any:
        with self.database.tenant_scope(CLINIC) as session:
            return session.execute(
                text(
                    """SELECT a.starts_at, a.calendar_sync, p.slug AS provider FROM appointments a
                       JOIN providers p ON p.id = a.provider_id WHERE a.id = :id"""
                ),
                {"id": appointment_id},
            ).one()

    def forget(self) -> None:
        with self.database.tenant_scope(CLINIC) as session:
            session.execute(text("DELETE FROM appointments WHERE client_id = :c"), {"c": self.client_id})


def _thursday(weeks: int) -> date:
    return (_BASE + timedelta(days=7 * weeks + 2)).astimezone(_la()).date()  # a Thursday no other test books


def test_a_small_move_is_not_blocked_by_the_appointments_own_synced_event(
    database: Database, fake: FakeGoogleCalendarApi
) -> None:
    """HydraFacial with Sofia (the only one who does it), its event synced: free/busy reports that event as busy,
    yet moving the visit by half an hour is no clash with anything but itself.  Her other plans still block."""
    day = _thursday(31)
    patient = _Patient(database, fake, day)
    try:
        booked = patient.tools.execute("book_appointment", {"service": "hydrafacial", "start": f"{day}T13:00"})
        assert booked["ok"] and booked["provider"] == "Sofia Ramirez", booked
        appointment_id = booked["appointment_id"]
        assert sync_appointment(database, _calendar(fake), CLINIC, appointment_id) == "synced"
        assert list(fake.calendars[SOFIA].events) == [event_id_for(appointment_id, CLINIC)]
        fake.add_busy(SOFIA, _at(day, 14, 45), _at(day, 15, 45))  # her own plans, in Google only

        # 14:00 runs (with the clean-up) to 15:15: into her 14:45 plans, refused as before.
        refused = patient.tools.execute(
            "reschedule_appointment", {"appointment_id": appointment_id, "new_start": f"{day}T14:00"}
        )
        assert refused["error"] == "that time is not available", refused
        assert patient.row(appointment_id).starts_at == _at(day, 13)

        moved = patient.tools.execute(
            "reschedule_appointment", {"appointment_id": appointment_id, "new_start": f"{day}T13:30"}
        )
        assert moved.get("ok") and moved["provider"] == "Sofia Ramirez", moved
        row = patient.row(appointment_id)
        assert row.starts_at == _at(day, 13, 30) and row.provider == "sofia-ramirez"
        fake.assert_clean()
    finally:
        patient.forget()


def test_a_move_stays_with_the_provider_and_only_the_appointments_own_time_is_forgiven(
    database: Database, fake: FakeGoogleCalendarApi
) -> None:
    """A consultation with Dr. Chen (everyone does them), its event synced.  Moving it a little keeps her rather
    than handing the visit to the next free provider; Google time of hers overlapping the visit is forgiven only
    where it lies inside the visit's own time, the rest still blocks."""
    day = _thursday(32)
    patient = _Patient(database, fake, day)
    try:
        booked = patient.tools.execute(
            "book_appointment", {"service": "consultation", "start": f"{day}T13:00", "provider": "Maya Chen"}
        )
        assert booked["ok"] and booked["provider"] == "Dr. Maya Chen", booked
        appointment_id = booked["appointment_id"]  # holds 13:00-13:40 (30 minutes and 10 of clean-up)
        assert sync_appointment(database, _calendar(fake), CLINIC, appointment_id) == "synced"
        fake.add_busy(MAYA, _at(day, 13, 30), _at(day, 14, 30))  # in Google only, overlapping the visit's end

        def proposed(start: str) -> str:
            result = patient.tools.execute(
                "propose_action", {"action": "reschedule", "appointment_id": appointment_id, "start": f"{day}T{start}"}
            )
            assert "error" not in result, result
            return str(result["provider_name"])

        assert proposed("12:45") == "Dr. Maya Chen"  # 12:45-13:25: only her own event was in the way
        assert proposed("13:15") == "Jordan Lee"  # 13:15-13:55 reaches her 13:40-14:30, still busy
        moved = patient.tools.execute(
            "reschedule_appointment", {"appointment_id": appointment_id, "new_start": f"{day}T12:45"}
        )
        assert moved.get("ok") and moved["provider"] == "Dr. Maya Chen", moved
        row = patient.row(appointment_id)
        assert row.starts_at == _at(day, 12, 45) and row.provider == "maya-chen"
        fake.assert_clean()
    finally:
        patient.forget()


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=_la())


def test_booking_a_long_visit_sees_calendar_plans_past_its_first_hour(
    database: Database, fake: FakeGoogleCalendarApi
) -> None:
    """A HydraFacial at 13:00 runs, with its clean-up, to 14:15: Sofia's Google-only plans at 14:05 clash with it.
    The booking's busy read used to end an hour after the start and missed them."""
    day = _thursday(33)
    patient = _Patient(database, fake, day)
    try:
        fake.add_busy(SOFIA, _at(day, 14, 5), _at(day, 14, 30))
        refused = patient.tools.execute("book_appointment", {"service": "hydrafacial", "start": f"{day}T13:00"})
        assert refused.get("error") == "that time is not available", refused
        booked = patient.tools.execute("book_appointment", {"service": "hydrafacial", "start": f"{day}T14:30"})
        assert booked.get("ok") and booked["provider"] == "Sofia Ramirez", booked
    finally:
        patient.forget()
