"""Calendar backed by Google Calendar v3 through ``google-api-python-client``.

The client is built from the discovery document bundled with the library
(``static_discovery=True``), so building it needs no network.  Events carry a
deterministic id derived from the appointment, which makes ``upsert_event``
idempotent: insert, and on 409 (the id exists — possibly as a cancelled
event) patch it back to the wanted state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.auth.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError

from domain.ports import BusyInterval, CalendarError, CalendarEvent

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/calendar",)
_FREEBUSY_MAX_CALENDARS = 50  # Google's limit per freebusy.query
_RETRYABLE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"}


def event_id_for(appointment_id: int, clinic_id: int) -> str:
    """The Google event id for an appointment: base32hex (``[a-v0-9]``), 52 chars, stable across retries."""
    digest = hashlib.sha256(f"medspa-agent:{clinic_id}:{appointment_id}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").lower().rstrip("=")


def build_calendar_service(
    credentials: Credentials | str | os.PathLike[str],
    api_endpoint: str | None = None,
    *,
    timeout: float = 10,
) -> Resource:
    """A calendar v3 client with an explicit socket timeout.

    ``credentials`` is a google-auth Credentials object or the path of a
    service-account JSON key (``GOOGLE_APPLICATION_CREDENTIALS``).
    ``api_endpoint`` replaces ``https://www.googleapis.com/calendar/v3/`` (a
    local fake in tests); a bare origin such as ``http://127.0.0.1:9000`` gets
    ``/calendar/v3/`` appended.  Requests still go through the library's real
    HTTP path (httplib2 + google-auth).
    """
    if not isinstance(credentials, Credentials):
        credentials = _service_account_credentials(os.fspath(credentials))
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    client_options = {"api_endpoint": _calendar_endpoint(api_endpoint)} if api_endpoint else None
    return build(
        "calendar", "v3", http=http, client_options=client_options, static_discovery=True, cache_discovery=False
    )


def _service_account_credentials(path: str) -> Credentials:
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_file(path, scopes=list(SCOPES))


def _calendar_endpoint(api_endpoint: str) -> str:
    trimmed = api_endpoint.rstrip("/")
    if trimmed.endswith("/calendar/v3"):
        return trimmed + "/"
    return trimmed + "/calendar/v3/"


class GoogleCalendar:
    """Busy times, and events kept in sync with appointments.

    One instance is shared by every worker thread, but ``httplib2.Http`` is not
    thread-safe, so each thread executes requests on its own authorized Http
    (same credentials and timeout as the service's).
    """

    def __init__(self, service: Resource) -> None:
        self._service = service
        self._local = threading.local()

    def _thread_http(self) -> Any:
        http = getattr(self._local, "http", None)
        if http is None:
            shared = getattr(self._service, "_http", None)
            if isinstance(shared, google_auth_httplib2.AuthorizedHttp):
                timeout = getattr(shared.http, "timeout", None)
                http = google_auth_httplib2.AuthorizedHttp(shared.credentials, http=httplib2.Http(timeout=timeout))
            else:
                http = shared  # e.g. googleapiclient's HttpMock: leave it as built
            self._local.http = http
        return http

    @classmethod
    def from_service_account_file(cls, path: str, *, timeout: float = 10) -> GoogleCalendar:
        """Credentials from ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account JSON key file)."""
        return cls(build_calendar_service(path, timeout=timeout))

    def busy(self, calendar_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, list[BusyInterval]]:
        result: dict[str, list[BusyInterval]] = {}
        ids = list(dict.fromkeys(calendar_ids))
        for offset in range(0, len(ids), _FREEBUSY_MAX_CALENDARS):
            chunk = ids[offset : offset + _FREEBUSY_MAX_CALENDARS]
            body = {"timeMin": _rfc3339(start), "timeMax": _rfc3339(end), "items": [{"id": cid} for cid in chunk]}
            response = self._execute(self._service.freebusy().query(body=body), "freebusy")
            calendars = response.get("calendars", {})
            for index, cid in enumerate(chunk):
                entry = calendars.get(cid)
                if entry is None:
                    raise CalendarError(f"freebusy answered without calendar #{offset + index}", retryable=False)
                errors = entry.get("errors") or []
                if errors:
                    reasons = {e.get("reason", "") for e in errors}
                    retryable = bool(reasons & _RETRYABLE_REASONS)
                    log.warning("google freebusy calendar_index=%s reasons=%s", offset + index, sorted(reasons))
                    raise CalendarError(
                        f"freebusy failed for calendar #{offset + index}: {sorted(reasons)}", retryable=retryable
                    )
                result[cid] = [
                    BusyInterval(start=_parse_time(b["start"]), end=_parse_time(b["end"]))
                    for b in entry.get("busy", [])
                ]
        return result

    def upsert_event(self, calendar_id: str, event: CalendarEvent) -> None:
        fields = {
            "summary": event.summary,
            "description": event.description,
            "start": {"dateTime": _rfc3339(event.start)},
            "end": {"dateTime": _rfc3339(event.end)},
            "status": "confirmed",
        }
        events = self._service.events()
        try:
            self._execute(
                events.insert(calendarId=calendar_id, body={"id": event.event_id, **fields}), "insert", raw=True
            )
            return
        except HttpError as exc:
            if exc.resp.status != 409:
                raise _classify_http(exc, "insert") from exc
        # Already there (perhaps cancelled by an earlier delete): bring it to the wanted state.
        self._execute(events.patch(calendarId=calendar_id, eventId=event.event_id, body=fields), "patch")

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        try:
            self._execute(self._service.events().delete(calendarId=calendar_id, eventId=event_id), "delete", raw=True)
        except HttpError as exc:
            if exc.resp.status in (404, 410):
                return  # already gone
            raise _classify_http(exc, "delete") from exc

    # ------------------------------------------------------------ helpers
    def _execute(self, request: Any, what: str, *, raw: bool = False) -> dict[str, Any]:
        """Run one request; ``raw`` lets HttpError through so the caller can inspect its status."""
        try:
            return request.execute(http=self._thread_http(), num_retries=0) or {}
        except HttpError as exc:
            if raw:
                raise
            raise _classify_http(exc, what) from exc
        except google.auth.exceptions.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            log.warning("google %s token refresh failed retryable=%s", what, retryable)
            raise CalendarError(f"google {what}: credentials refresh failed", retryable=retryable) from exc
        except (TimeoutError, OSError, httplib2.HttpLib2Error, google.auth.exceptions.TransportError) as exc:
            log.warning("google %s transport error kind=%s", what, type(exc).__name__)
            raise CalendarError(f"google {what} unreachable: {type(exc).__name__}", retryable=True) from exc


def _classify_http(exc: HttpError, what: str) -> CalendarError:
    status = int(exc.resp.status)
    reason = _reason(exc)
    retryable = status == 429 or status >= 500 or (status == 403 and reason in _RETRYABLE_REASONS)
    log.warning("google %s failed status=%s reason=%s retryable=%s", what, status, reason, retryable)
    return CalendarError(f"google {what} failed: HTTP {status} {reason}", retryable=retryable)


def _reason(exc: HttpError) -> str:
    try:
        payload = json.loads(exc.content.decode("utf-8"))
        return str(payload["error"]["errors"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("calendar times must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
