"""Twilio voice: a call to the clinic's number, answered with short TwiML; an unanswered call is recorded.

``POST /webhooks/twilio/voice`` (the number's voice URL): the same signature check as SMS
(``webhooks.twilio.verified_form``) → the clinic by ``To`` → the clinic's missed-call settings
(``domain.missed_calls``).  During opening hours, when the clinic forwards calls, the answer is a ``<Dial>`` to the
front desk whose ``action`` is ``/webhooks/twilio/voice/dial-status``; otherwise the caller hears the clinic's
message and the call is recorded as missed.  The Dial action records it when the front desk did not pick up
(busy, no answer, failed).

Recording a missed call is the inbox's durable write (source ``voice``, keyed by ``CallSid``: Twilio's retries
and both routes of one call make one row) before the TwiML goes back; then ``handle_missed_call`` is enqueued,
best effort — the sweeper finds an event nobody processed (``worker/sweeper.py``).  Nothing before the write
touches Redis.  The text itself is the worker's (``worker/missed_calls.py``): consent, quiet hours, the daily cap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response
from twilio.twiml.voice_response import VoiceResponse

from domain.missed_calls import CallAnswer, MissedCallPolicy, answer_call, dial_missed, is_open, textable_caller
from medspa.broker import INBOUND_QUEUE, message_for
from medspa.logs import new_trace_id, trace_id_var
from webhooks.http import error
from webhooks.inbox import EventRejected
from webhooks.state import AppState
from webhooks.twilio import verified_form
from webhooks.validation import too_long_field

log = logging.getLogger(__name__)

DIAL_STATUS_PATH = "/webhooks/twilio/voice/dial-status"
_REQUIRED = ("CallSid", "From", "To")
_LIMITS = {"CallSid": 64, "From": 64, "To": 64}
_CLINIC = "SELECT name, phone, timezone, business_hours, holidays, policies FROM clinics WHERE id = %s"


@dataclass(frozen=True)
class VoiceClinic:
    name: str
    front_desk: str | None
    timezone: str
    business_hours: dict[str, Any]
    holidays: list[Any]
    policy: MissedCallPolicy

    def answer(self, now: datetime) -> CallAnswer:
        open_now = is_open(now, self.timezone, self.business_hours, self.holidays)
        return answer_call(self.policy, clinic_name=self.name, front_desk=self.front_desk, open_now=open_now)


class VoiceClinics:
    """The clinic facts a call needs (name, hours, missed-call settings), cached for a minute per process."""

    def __init__(self, pool: AsyncConnectionPool, ttl_s: float = 60.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._cache: dict[int, tuple[float, VoiceClinic]] = {}

    async def get(self, clinic_id: int) -> VoiceClinic | None:
        cached = self._cache.get(clinic_id)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute(_CLINIC, (clinic_id,))
            row = await cur.fetchone()
        if row is None:
            return None
        name, phone, tz, hours, holidays, policies = row
        clinic = VoiceClinic(
            str(name), phone, str(tz), dict(hours or {}), list(holidays or []), MissedCallPolicy.from_policies(policies)
        )
        self._cache[clinic_id] = (time.monotonic(), clinic)
        return clinic


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="text/xml")


def _say(greeting: str) -> Response:
    response = VoiceResponse()
    response.say(greeting)
    response.hangup()
    return _twiml(response)


async def _call(request: Request) -> tuple[AppState, dict[str, str], int, VoiceClinic] | Response:
    """The verified, validated form of a voice webhook with its clinic, or the error response."""
    state: AppState = request.app.state.medspa
    trace_id_var.set(new_trace_id())
    form = await verified_form(request, state)
    if isinstance(form, Response):
        return form
    missing = [name for name in _REQUIRED if not form.get(name)]
    if missing:
        return error(400, f"missing required field(s): {', '.join(missing)}")
    too_long = too_long_field(form, _LIMITS)
    if too_long is not None:
        return error(400, f"{too_long} is longer than {_LIMITS[too_long]} characters")
    route = await state.inbox.clinic_for_number(form["To"])
    if route is None:
        log.warning("inbound call for a number no clinic owns")
        return error(404, "no clinic is configured for the To number")
    assert state.voice_clinics is not None, "created at startup"
    clinic = await state.voice_clinics.get(route.clinic_id)
    if clinic is None:
        return error(404, "no clinic is configured for the To number")
    return state, form, route.clinic_id, clinic


async def _record_missed(state: AppState, clinic_id: int, form: dict[str, str], reason: str) -> Response | None:
    """The durable record of a missed call (committed when this returns), then the enqueue; an error response
    when it cannot be stored.  A caller we cannot text (withheld number) is not recorded."""
    if not textable_caller(form["From"]):
        log.info("missed call from a withheld or non-E.164 caller id: nothing to text", extra={"clinic_id": clinic_id})
        return None
    payload = {"from": form["From"], "to": form["To"], "reason": reason, "call_status": form.get("CallStatus", "")}
    try:
        inbox_id = await state.inbox.record(
            clinic_id, "voice", form["CallSid"], f"voice:{form['From']}", payload, trace_id_var.get()
        )
    except EventRejected:
        return error(400, "this call cannot be stored")
    if inbox_id is not None:
        state.enqueuer.submit(message_for("handle_missed_call", INBOUND_QUEUE, clinic_id, inbox_id))
        log.info("missed call recorded", extra={"clinic_id": clinic_id, "inbox_id": inbox_id, "reason": reason})
    return None


async def inbound_call(request: Request) -> Response:
    call = await _call(request)
    if isinstance(call, Response):
        return call
    state, form, clinic_id, clinic = call
    answer = clinic.answer(datetime.now(UTC))
    if not answer.missed:
        response = VoiceResponse()
        dial = response.dial(
            action=state.public_base_url.rstrip("/") + DIAL_STATUS_PATH, method="POST", timeout=answer.ring_seconds
        )
        dial.number(str(answer.forward_to))
        return _twiml(response)
    failed = await _record_missed(state, clinic_id, form, "not_forwarded")
    return failed or _say(answer.greeting)


async def dial_status(request: Request) -> Response:
    """The ``<Dial>`` action: the front desk picked up (the call is over) or it did not (a missed call)."""
    call = await _call(request)
    if isinstance(call, Response):
        return call
    state, form, clinic_id, clinic = call
    status = form.get("DialCallStatus")
    if not dial_missed(status):
        response = VoiceResponse()
        response.hangup()
        return _twiml(response)
    failed = await _record_missed(state, clinic_id, form, (status or "no-status")[:32])
    return failed or _say(clinic.answer(datetime.now(UTC)).greeting)
