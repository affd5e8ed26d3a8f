"""GoogleCalendar through google-api-python-client (static discovery) against the local Calendar fake."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials

from domain.ports import BusyInterval, CalendarError, CalendarEvent
from tests.fakes.google_api import FakeGoogleCalendarApi
from tests.fakes.http import Reply
from worker.integrations.google_calendar import GoogleCalendar, build_calendar_service, event_id_for

PROVIDER = "dr.lee@clinic.example"
OTHER = "nurse.kim@clinic.example"
T0 = datetime(2031, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendarApi]:
    with FakeGoogleCalendarApi([PROVIDER, OTHER]) as server:
        yield server


def _calendar(fake: FakeGoogleCalendarApi, timeout: float = 5) -> GoogleCalendar:
    service = build_calendar_service(AnonymousCredentials(), api_endpoint=fake.api_endpoint, timeout=timeout)
    return GoogleCalendar(service)


def _event(appointment_id: int = 42, start: datetime = T0, minutes: int = 60) -> CalendarEvent:
    return CalendarEvent(
        event_id=event_id_for(appointment_id, clinic_id=1),
        summary="Appointment #42",
        start=start,
        end=start + timedelta(minutes=minutes),
        description="Booked by the agent",
    )


def test_event_ids_are_deterministic_base32hex() -> None:
    first = event_id_for(42, 1)
    assert first == event_id_for(42, 1)
    assert first != event_id_for(43, 1) and first != event_id_for(42, 2)
    assert re.fullmatch(r"[a-v0-9]{5,1024}", first)


def test_insert_sends_the_event_with_its_id(fake: FakeGoogleCalendarApi) -> None:
    local = ZoneInfo("America/Los_Angeles")
    event = _event(start=datetime(2031, 3, 4, 9, 30, tzinfo=local))
    _calendar(fake).upsert_event(PROVIDER, event)

    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == "/calendar/v3/calendars/dr.lee%40clinic.example/events"
    body = request.json()
    assert body["id"] == event.event_id
    assert body["start"] == {"dateTime": "2031-03-04T17:30:00Z"}
    assert body["end"] == {"dateTime": "2031-03-04T18:30:00Z"}
    assert body["summary"] == "Appointment #42"
    assert fake.calendars[PROVIDER].events[event.event_id]["status"] == "confirmed"
    fake.assert_clean()


def test_upsert_twice_patches_instead_of_duplicating(fake: FakeGoogleCalendarApi) -> None:
    calendar = _calendar(fake)
    calendar.upsert_event(PROVIDER, _event())
    moved = _event(start=T0 + timedelta(hours=2))
    calendar.upsert_event(PROVIDER, moved)

    assert [r.method for r in fake.requests] == ["POST", "POST", "PATCH"]
    stored = fake.calendars[PROVIDER].events
    assert len(stored) == 1
    assert stored[moved.event_id]["start"]["dateTime"] == "2031-03-04T17:00:00Z"
    assert "id" not in fake.requests[2].json()
    fake.assert_clean()


def test_rebooking_after_delete_revives_the_cancelled_event(fake: FakeGoogleCalendarApi) -> None:
    calendar = _calendar(fake)
    calendar.upsert_event(PROVIDER, _event())
    calendar.delete_event(PROVIDER, _event().event_id)
    assert fake.calendars[PROVIDER].events[_event().event_id]["status"] == "cancelled"

    calendar.upsert_event(PROVIDER, _event())
    assert fake.calendars[PROVIDER].events[_event().event_id]["status"] == "confirmed"


def test_delete_of_missing_or_deleted_event_is_done(fake: FakeGoogleCalendarApi) -> None:
    calendar = _calendar(fake)
    calendar.delete_event(PROVIDER, event_id_for(999, 1))  # 404
    calendar.upsert_event(PROVIDER, _event())
    calendar.delete_event(PROVIDER, _event().event_id)  # 204
    calendar.delete_event(PROVIDER, _event().event_id)  # 410
    deletes = [status for request, status in fake.exchanges if request.method == "DELETE"]
    assert deletes == [404, 204, 410]


def test_busy_reads_freebusy_per_calendar(fake: FakeGoogleCalendarApi) -> None:
    calendar = _calendar(fake)
    calendar.upsert_event(PROVIDER, _event())
    fake.add_busy(OTHER, T0 - timedelta(hours=1), T0 + timedelta(minutes=30))

    busy = calendar.busy([PROVIDER, OTHER], T0 - timedelta(hours=2), T0 + timedelta(hours=8))

    assert busy == {
        PROVIDER: [BusyInterval(T0, T0 + timedelta(hours=1))],
        OTHER: [BusyInterval(T0 - timedelta(hours=1), T0 + timedelta(minutes=30))],
    }
    body = fake.requests_to("POST", "/calendar/v3/freeBusy")[0].json()
    assert body["timeMin"] == "2031-03-04T13:00:00Z"
    assert body["timeMax"] == "2031-03-04T23:00:00Z"
    assert body["items"] == [{"id": PROVIDER}, {"id": OTHER}]
    fake.assert_clean()


def test_busy_for_unknown_calendar_is_a_final_error(fake: FakeGoogleCalendarApi) -> None:
    with pytest.raises(CalendarError) as caught:
        _calendar(fake).busy(["nobody@clinic.example"], T0, T0 + timedelta(hours=1))
    assert caught.value.retryable is False


@pytest.mark.parametrize("status", [429, 403, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(fake: FakeGoogleCalendarApi, status: int) -> None:
    if status in (429, 403):
        fake.rate_limit_next(status=status)  # Calendar signals rate limits as 403 rateLimitExceeded too
    else:
        fake.server_error_next(status=status)
    calendar = _calendar(fake)
    with pytest.raises(CalendarError) as caught:
        calendar.upsert_event(PROVIDER, _event())
    assert caught.value.retryable is True
    assert len(fake.requests) == 1
    calendar.upsert_event(PROVIDER, _event())  # the caller's retry works
    assert _event().event_id in fake.calendars[PROVIDER].events


def test_errors_in_busy_and_delete_are_mapped(fake: FakeGoogleCalendarApi) -> None:
    calendar = _calendar(fake)
    fake.server_error_next()
    with pytest.raises(CalendarError) as caught:
        calendar.busy([PROVIDER], T0, T0 + timedelta(hours=1))
    assert caught.value.retryable is True
    fake.rate_limit_next()
    with pytest.raises(CalendarError) as caught:
        calendar.delete_event(PROVIDER, _event().event_id)
    assert caught.value.retryable is True


def test_other_client_errors_are_final(fake: FakeGoogleCalendarApi) -> None:
    with pytest.raises(CalendarError) as caught:
        _calendar(fake).upsert_event("unknown@clinic.example", _event())  # 404 calendar
    assert caught.value.retryable is False
    bad = CalendarEvent(event_id="Not_Valid!", summary="x", start=T0, end=T0 + timedelta(hours=1))
    with pytest.raises(CalendarError) as caught:
        _calendar(fake).upsert_event(PROVIDER, bad)
    assert caught.value.retryable is False
    assert fake.violations  # the fake saw the malformed id


def test_timeout_and_refused_connection_are_retryable(fake: FakeGoogleCalendarApi) -> None:
    fake.delay_next(5.0)
    with pytest.raises(CalendarError) as caught:
        _calendar(fake, timeout=0.3).upsert_event(PROVIDER, _event())
    assert caught.value.retryable is True

    with FakeGoogleCalendarApi([PROVIDER]) as gone:
        endpoint = gone.api_endpoint
    service = build_calendar_service(AnonymousCredentials(), api_endpoint=endpoint, timeout=2)
    with pytest.raises(CalendarError) as caught:
        GoogleCalendar(service).busy([PROVIDER], T0, T0 + timedelta(hours=1))
    assert caught.value.retryable is True


def test_naive_datetimes_are_refused(fake: FakeGoogleCalendarApi) -> None:
    with pytest.raises(ValueError):
        _calendar(fake).busy([PROVIDER], datetime(2031, 1, 1), datetime(2031, 1, 2))
    assert fake.requests == []


def test_service_account_key_file_authenticates_with_a_bearer_token(tmp_path: Path) -> None:
    """The production path: GOOGLE_APPLICATION_CREDENTIALS → JWT-bearer token exchange → Bearer calls."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with FakeGoogleCalendarApi([PROVIDER], require_token=True) as fake:
        key_file = tmp_path / "service-account.json"
        key_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "medspa-test",
                    "private_key_id": "k1",
                    "private_key": pem.decode(),
                    "client_email": "agent@medspa-test.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": fake.token_uri,
                }
            )
        )
        calendar = GoogleCalendar(build_calendar_service(str(key_file), fake.base_url))  # bare origin accepted
        calendar.upsert_event(PROVIDER, _event())

        assert fake.token_claims[0]["iss"] == "agent@medspa-test.iam.gserviceaccount.com"
        assert fake.token_claims[0]["scope"] == "https://www.googleapis.com/auth/calendar"
        event_call = fake.requests_to("POST", "/calendar/v3/calendars/")[0]
        assert event_call.header("Authorization") == f"Bearer {fake.issued_tokens[0]}"
        assert _event().event_id in fake.calendars[PROVIDER].events
        fake.assert_clean()

        fake.issued_tokens.clear()  # token revoked: 401, google-auth refreshes once and the call goes through
        calendar.delete_event(PROVIDER, _event().event_id)
        assert len(fake.token_claims) == 2
        assert fake.calendars[PROVIDER].events[_event().event_id]["status"] == "cancelled"

        fake.issued_tokens.clear()  # and when the key itself is refused, that's a final error
        fake.script(
            Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            when=lambda r: r.path == "/token",
        )
        with pytest.raises(CalendarError) as caught:
            calendar.upsert_event(PROVIDER, _event())
        assert caught.value.retryable is False
