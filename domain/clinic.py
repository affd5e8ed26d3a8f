"""The clinic: one typed model for everything that reads a clinic's facts and policies.

Loaded once by ``db.clinics.load_clinic`` (one statement, routing included) and used by the agent's turn
(``domain.conversation.ClinicProfile`` is this class), the tools, the booking service, the outbox and the staff
commands.  The raw ``policies`` JSON stays available for the few keys read in one place only (quiet hours,
marketing caps, …); every policy that more than one module reads is a typed property here.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.appointments import DEFAULT_HOLD_MINUTES, CancellationPolicy
from domain.availability import ClinicSchedule, DayHours, parse_closed_dates, parse_hours

DEFAULT_LEAD_MINUTES = 120
DEFAULT_CURRENCY = "usd"


@dataclass(frozen=True)
class ClinicRouting:
    """Where the clinic's messages go out from and urgent calls go to."""

    sms_number: str = ""
    oncall_phone: str | None = None
    messaging_service_sid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The mapping shape the outbox and the turn pipeline take (``routing["sms_number"]``)."""
        return {
            "sms_number": self.sms_number,
            "oncall_phone": self.oncall_phone,
            "messaging_service_sid": self.messaging_service_sid,
        }


def lead_time_minutes(policies: dict[str, Any]) -> int:
    """How far ahead a booking must start (policy ``min_lead_minutes`` and its older spellings; two hours when
    unset)."""
    if "min_lead_minutes" in policies:
        return int(policies["min_lead_minutes"] or 0)
    if "min_notice_minutes" in policies:
        return int(policies["min_notice_minutes"] or 0)
    if "booking_lead_time_minutes" in policies:
        return int(policies["booking_lead_time_minutes"] or 0)
    if "min_notice_hours" in policies:
        return int(float(policies["min_notice_hours"] or 0) * 60)
    return DEFAULT_LEAD_MINUTES


@dataclass(frozen=True)
class Clinic:
    """A clinic: identity, contact, hours, closed dates and policies (the positional order is the historical
    ``ClinicProfile`` one, so existing constructors keep working)."""

    id: int
    name: str
    timezone: str
    phone: str
    address: str
    business_hours: dict[str, Any]
    holidays: list[Any]
    policies: dict[str, Any]
    slug: str = ""
    routing: ClinicRouting = field(default_factory=ClinicRouting)

    # ------------------------------------------------------------------ time
    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def hours(self) -> tuple[DayHours, ...]:
        return parse_hours(self.business_hours or {})

    @property
    def closed_dates(self) -> frozenset[date]:
        return parse_closed_dates(list(self.holidays or []))

    @property
    def schedule(self) -> ClinicSchedule:
        return ClinicSchedule(tz=self.timezone, hours=self.hours, closed_dates=self.closed_dates)

    # ------------------------------------------------------------------ booking policies
    @property
    def lead_time(self) -> timedelta:
        return timedelta(minutes=lead_time_minutes(self.policies or {}))

    def hold_minutes(self, fallback: int | None = None) -> int:
        """How long an unpaid deposit holds the slot: policy ``deposit_hold_minutes``, else ``fallback`` (the
        service-wide ``DEPOSIT_HOLD_MINUTES``), else thirty minutes."""
        default = fallback or DEFAULT_HOLD_MINUTES
        return int((self.policies or {}).get("deposit_hold_minutes", default) or default)

    @property
    def currency(self) -> str:
        return str((self.policies or {}).get("currency", DEFAULT_CURRENCY))

    @property
    def cancellation(self) -> CancellationPolicy:
        return CancellationPolicy.from_policies(self.policies or {})
