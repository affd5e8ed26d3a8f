"""Local stand-in for Google Calendar v3 (freeBusy and events), checked at the wire.

Models the behaviours the adapter depends on: inserting an event whose id
already exists is a 409 — also when that event was deleted, because Google
keeps deleted events as ``status: cancelled`` — and deleting an
already-deleted event is a 410.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.http import FakeHttpServer, RecordedRequest, Reply, require

_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_EVENTS = re.compile(r"^/calendar/v3/calendars/(?P<cid>[^/]+)/events(?:/(?P<eid>[^/]+))?$")


def google_error(status: int, reason: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "error": {
                "errors": [{"domain": "global", "reason": reason, "message": message}],
                "code": status,
                "message": message,
            }
        },
    )


def _parse_rfc3339(text: str, what: str) -> datetime:
    require(
        isinstance(text, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text),
        f"{what} must be RFC3339 with offset, got {text!r}",
    )
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class FakeCalendar:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_busy: list[tuple[datetime, datetime]] = field(default_factory=list)


class FakeGoogleCalendarApi(FakeHttpServer):
    """/calendar/v3/freeBusy and /calendar/v3/calendars/{cid}/events[/{eid}]."""

    def __init__(self, known_calendars: list[str], *, require_token: bool = False) -> None:
        super().__init__()
        self.calendars: dict[str, FakeCalendar] = {cid: FakeCalendar() for cid in known_calendars}
        self.require_token = require_token
        self.issued_tokens: list[str] = []
        self.token_claims: list[dict[str, Any]] = []
        self._store_lock = threading.Lock()

    @property
    def token_uri(self) -> str:
        """Put this as ``token_uri`` in a service-account key file to have its token exchange land here."""
        return self.base_url + "/token"

    @property
    def api_endpoint(self) -> str:
        """What to give ``build(client_options={"api_endpoint": ...})``."""
        return self.base_url + "/calendar/v3/"

    def add_busy(self, calendar_id: str, start: datetime, end: datetime) -> None:
        """A busy block that exists in Google but not in our database (e.g. the provider's lunch)."""
        self.calendars[calendar_id].extra_busy.append((start, end))

    # ------------------------------------------------------------ scripted failures
    def rate_limit_next(self, count: int = 1, *, status: int = 429) -> None:
        reason = "rateLimitExceeded"
        self.script(google_error(status, reason, "Rate Limit Exceeded"), times=count)

    def server_error_next(self, count: int = 1, status: int = 500) -> None:
        self.script(google_error(status, "backendError", "Backend Error"), times=count)

    def delay_next(self, seconds: float) -> None:
        self.script(Reply(500, {"error": {"code": 500, "message": "late"}}, delay_s=seconds))

    # ------------------------------------------------------------ behaviour
    def violation_reply(self, message: str) -> Reply:
        return google_error(400, "invalid", f"fake: {message}")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self._token(request)
        if self.require_token:
            auth = request.header("Authorization") or ""
            if not auth.startswith("Bearer ") or auth[7:] not in self.issued_tokens:
                return google_error(401, "authError", "Invalid Credentials")
        if request.method in {"POST", "PATCH", "PUT"}:
            require((request.header("Content-Type") or "").startswith("application/json"), "body must be JSON")
        if request.path == "/calendar/v3/freeBusy" and request.method == "POST":
            return self._freebusy(request.json())
        match = _EVENTS.match(request.path)
        if match is None:
            return google_error(404, "notFound", "Not Found")
        cid = unquote(match["cid"])
        eid = unquote(match["eid"]) if match["eid"] else None
        with self._store_lock:
            calendar = self.calendars.get(cid)
            if calendar is None:
                return google_error(404, "notFound", "Not Found")
            if eid is None and request.method == "POST":
                return self._insert(calendar, request.json())
            if eid is None:
                return google_error(405, "methodNotAllowed", "Method not allowed")
            existing = calendar.events.get(eid)
            if request.method == "DELETE":
                if existing is None:
                    return google_error(404, "notFound", "Not Found")
                if existing["status"] == "cancelled":
                    return google_error(410, "deleted", "Resource has been deleted")
                existing["status"] = "cancelled"
                return Reply(204)
            if request.method in {"PATCH", "PUT"}:
                if existing is None:
                    return google_error(404, "notFound", "Not Found")
                body = request.json()
                require("id" not in body or body["id"] == eid, "patch body must not change the id")
                self._check_times(body, partial=request.method == "PATCH")
                if request.method == "PUT":
                    existing = {"id": eid, "status": "confirmed"}
                existing.update(body)
                existing["sequence"] = existing.get("sequence", 0) + 1
                calendar.events[eid] = existing
                return Reply(200, self._resource(cid, existing))
            if request.method == "GET":
                if existing is None:
                    return google_error(404, "notFound", "Not Found")
                return Reply(200, self._resource(cid, existing))
        return google_error(405, "methodNotAllowed", "Method not allowed")

    def _token(self, request: RecordedRequest) -> Reply:
        """OAuth 2.0 JWT-bearer grant, as google-auth's service-account credentials perform it."""
        form = {k: v[-1] for k, v in request.form().items()}
        require(form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer", "jwt-bearer grant expected")
        parts = form.get("assertion", "").split(".")
        require(len(parts) == 3, "assertion must be a JWT")
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        require(claims.get("aud") == "https://oauth2.googleapis.com/token", "JWT aud must be Google's token endpoint")
        require("scope" in claims and "iss" in claims, "JWT needs iss and scope")
        token = "ya29.fake-" + secrets.token_hex(8)
        with self._store_lock:
            self.issued_tokens.append(token)
            self.token_claims.append(claims)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _check_times(self, body: dict[str, Any], *, partial: bool) -> None:
        for key in ("start", "end"):
            if partial and key not in body:
                continue
            require(isinstance(body.get(key), dict) and "dateTime" in body[key], f"{key}.dateTime required")
        if "start" in body and "end" in body:
            start = _parse_rfc3339(body["start"]["dateTime"], "start.dateTime")
            end = _parse_rfc3339(body["end"]["dateTime"], "end.dateTime")
            require(end > start, "end must be after start")

    def _insert(self, calendar: FakeCalendar, body: dict[str, Any]) -> Reply:
        require(isinstance(body, dict), "insert body must be an object")
        eid: Any = body.get("id")
        require(isinstance(eid, str) and _EVENT_ID.match(eid), f"event id {eid!r} is not base32hex [a-v0-9]{{5,1024}}")
        self._check_times(body, partial=False)
        if eid in calendar.events:  # also when cancelled: Google keeps deleted ids
            return google_error(409, "duplicate", "The requested identifier already exists.")
        event = {"status": "confirmed", **body, "sequence": 0}
        calendar.events[eid] = event
        cid = next(k for k, v in self.calendars.items() if v is calendar)
        return Reply(200, self._resource(cid, event))

    def _resource(self, cid: str, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "calendar#event",
            "etag": f'"{event.get("sequence", 0)}"',
            "htmlLink": f"https://www.google.com/calendar/event?eid={event['id']}",
            "organizer": {"email": cid, "self": True},
            **event,
        }

    def _freebusy(self, body: dict[str, Any]) -> Reply:
        require(isinstance(body, dict), "freeBusy body must be an object")
        time_min = _parse_rfc3339(body.get("timeMin"), "timeMin")  # type: ignore[arg-type]
        time_max = _parse_rfc3339(body.get("timeMax"), "timeMax")  # type: ignore[arg-type]
        require(time_max > time_min, "timeMax must be after timeMin")
        items: Any = body.get("items")
        require(isinstance(items, list) and items and all("id" in i for i in items), "items: [{id}] required")
        require(len(items) <= 50, "at most 50 calendars per query")
        calendars: dict[str, Any] = {}
        with self._store_lock:
            for item in items:
                cid = item["id"]
                calendar = self.calendars.get(cid)
                if calendar is None:
                    calendars[cid] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                blocks = list(calendar.extra_busy)
                for event in calendar.events.values():
                    if event["status"] == "cancelled":
                        continue
                    blocks.append(
                        (
                            _parse_rfc3339(event["start"]["dateTime"], "start"),
                            _parse_rfc3339(event["end"]["dateTime"], "end"),
                        )
                    )
                busy = sorted((s, e) for s, e in blocks if s < time_max and e > time_min)
                calendars[cid] = {
                    "busy": [{"start": _z(max(s, time_min)), "end": _z(min(e, time_max))} for s, e in busy]
                }
        return Reply(
            200,
            {
                "kind": "calendar#freeBusy",
                "timeMin": body["timeMin"],
                "timeMax": body["timeMax"],
                "calendars": calendars,
            },
        )


def _z(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
