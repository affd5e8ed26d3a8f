"""Missed-call text-back: how a call to the clinic's number is answered, and whether its caller gets a text.

A call to the clinic's Twilio number is answered with short TwiML: during opening hours (when the clinic asks for
it) the call rings the front desk; otherwise — and when the front desk does not pick up — the caller hears the
clinic's message and gets one text inviting them to continue by SMS.  The text is a text the clinic starts about
the caller's own call: the transactional rules apply (an opt-out blocks it, quiet hours defer it; no marketing
consent needed — ``domain.audience``), plus a per-number daily cap so a caller who rings five times gets one
text.  Everything here is pure: the clinic's settings (``policies.missed_calls``) in, a decision out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.availability import parse_closed_dates, parse_hours
from domain.segments import to_gsm_friendly

DEFAULT_GREETING = "Thanks for calling {clinic}. We can't take your call right now - we'll text you in a moment."
DEFAULT_TEXT = "Sorry we missed your call - text us here to book or ask anything. - {clinic}"
DEFAULT_DAILY_CAP = 1
DEFAULT_RING_SECONDS = 20
# What the Dial action's ``DialCallStatus`` says when someone picked up; anything else is a missed call.
ANSWERED_DIAL_STATUSES = frozenset({"completed", "answered"})
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class MissedCallPolicy:
    """A clinic's missed-call settings (``policies.missed_calls`` in the clinic file; all optional)."""

    enabled: bool = True  # text callers back at all (the call is answered either way)
    greeting: str = DEFAULT_GREETING  # what the caller hears ({clinic} is the clinic's name)
    text: str = DEFAULT_TEXT  # the one text the caller gets
    forward_during_hours: bool = False  # ring the front desk while the clinic is open
    forward_to: str | None = None  # the number to ring (default: the clinic's front-desk number)
    ring_seconds: int = DEFAULT_RING_SECONDS
    daily_cap: int = DEFAULT_DAILY_CAP  # texts per calling number per clinic-local day

    @classmethod
    def from_policies(cls, policies: Mapping[str, Any] | None) -> MissedCallPolicy:
        raw = (policies or {}).get("missed_calls") or {}
        if not isinstance(raw, Mapping):
            return cls()

        def text_of(key: str, default: str) -> str:
            value = raw.get(key)
            return str(value).strip() if isinstance(value, str) and value.strip() else default

        def int_of(key: str, default: int, low: int, high: int) -> int:
            value = raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(low, min(high, value))
            return default

        forward_to = raw.get("forward_to")
        return cls(
            enabled=bool(raw.get("enabled", True)),
            greeting=text_of("greeting", DEFAULT_GREETING),
            text=text_of("text", DEFAULT_TEXT),
            forward_during_hours=bool(raw.get("forward_during_hours", False)),
            forward_to=str(forward_to) if isinstance(forward_to, str) and _E164.match(forward_to) else None,
            ring_seconds=int_of("ring_seconds", DEFAULT_RING_SECONDS, 5, 60),
            daily_cap=int_of("daily_cap", DEFAULT_DAILY_CAP, 0, 10),
        )


@dataclass(frozen=True)
class CallAnswer:
    """How to answer a call: ring ``forward_to`` (then the Dial action decides), or say ``greeting`` and record
    the call as missed."""

    greeting: str
    forward_to: str | None = None
    ring_seconds: int = DEFAULT_RING_SECONDS

    @property
    def missed(self) -> bool:
        return self.forward_to is None


def is_open(now: datetime, tz: str, business_hours: Mapping[str, Any] | None, holidays: list[Any] | None) -> bool:
    """Is the clinic open at ``now`` (its business hours in its zone; closed on its holidays)?"""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(tz))
    if local.date() in parse_closed_dates(list(holidays or [])):
        return False
    clock = local.time().replace(tzinfo=None)
    return any(
        h.weekday == local.weekday() and h.start <= clock < h.end for h in parse_hours(dict(business_hours or {}))
    )


def answer_call(policy: MissedCallPolicy, *, clinic_name: str, front_desk: str | None, open_now: bool) -> CallAnswer:
    greeting = to_gsm_friendly(policy.greeting.replace("{clinic}", clinic_name))
    target = policy.forward_to or front_desk
    if policy.forward_during_hours and open_now and target and _E164.match(target):
        return CallAnswer(greeting, target, policy.ring_seconds)
    return CallAnswer(greeting)


def dial_missed(dial_status: str | None) -> bool:
    """The front desk did not pick up (busy, no answer, failed, cancelled, or no status at all)."""
    return (dial_status or "").strip().lower() not in ANSWERED_DIAL_STATUSES


def textable_caller(caller: str | None) -> bool:
    """A caller id we can text: E.164 (withheld, "anonymous" or short codes are not)."""
    return bool(caller and _E164.match(caller))


def text_back_body(policy: MissedCallPolicy, clinic_name: str) -> str:
    return to_gsm_friendly(policy.text.replace("{clinic}", clinic_name))


def local_day_start(now: datetime, tz: str) -> datetime:
    """Midnight of ``now``'s clinic-local day (the daily cap's window), as an aware instant."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0, 0), tzinfo=zone)
    # A zone whose midnight does not exist (a DST jump at 00:00) starts the day at the first instant that does.
    return midnight if midnight.utcoffset() is not None else midnight + timedelta(hours=1)


def text_back_skip_reason(policy: MissedCallPolicy, *, caller_ok: bool, texted_today: int) -> str | None:
    """Why this missed call gets no text (None: text it, subject to the send decision on consent and hours)."""
    if not policy.enabled:
        return "disabled"
    if not caller_ok:
        return "no_caller_id"
    if texted_today >= policy.daily_cap:
        return "daily_cap"
    return None
