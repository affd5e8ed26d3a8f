"""Availability over the database and the providers' external calendars: open slots, alternatives near a time,
and the check a booking or a move passes first (the exclusion constraint stays the final guard).

Busy times from external calendars are read outside any transaction; a failed lookup only misses external
events (our own bookings still count)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from db.engine import Database
from domain import availability
from domain.availability import parse_hours
from domain.clinic import Clinic
from domain.ports import BusyInterval, Calendar, CalendarError
from domain.prompt import local_label
from domain.timeparse import AFTERNOON, EVENING, MORNING
from worker.appointments import store
from worker.appointments.rows import AppointmentError, ProviderRow, ServiceRow

log = logging.getLogger(__name__)

MAX_SLOTS = 4
PARTS_OF_DAY = {"morning": MORNING, "afternoon": AFTERNOON, "evening": EVENING}


def one_per_start(
    slots: list[availability.Slot], limit: int, min_gap: timedelta = timedelta(0)
) -> list[availability.Slot]:
    """Keep order; one slot per start time and at least ``min_gap`` from every slot already kept."""
    chosen: list[availability.Slot] = []
    for slot in slots:
        if len(chosen) >= limit:
            break
        if any(abs(slot.start - c.start) < max(min_gap, timedelta(minutes=1)) for c in chosen):
            continue
        chosen.append(slot)
    return chosen


def provider_hours(provider: ProviderRow, clinic: Clinic) -> tuple[availability.DayHours, ...]:
    """A provider's working hours as slot-finding reads them: their own, or the clinic's when they have none."""
    return parse_hours(provider.working_hours) or clinic.hours


@dataclass(frozen=True)
class _Own:
    """The appointment a query ignores (a move): its provider and the time it holds now."""

    provider_id: int
    interval: BusyInterval


def _without(intervals: list[BusyInterval], cut: BusyInterval) -> list[BusyInterval]:
    """``intervals`` less the time in ``cut``: what lies before or after it stays."""
    out: list[BusyInterval] = []
    for b in intervals:
        if b.end <= cut.start or cut.end <= b.start:
            out.append(b)
            continue
        if b.start < cut.start:
            out.append(BusyInterval(b.start, cut.start))
        if cut.end < b.end:
            out.append(BusyInterval(cut.end, b.end))
    return out


class Availability:
    """Slots of one clinic as of ``now``."""

    def __init__(self, database: Database, clinic: Clinic, *, now: datetime, calendar: Calendar | None) -> None:
        self.database = database
        self.clinic = clinic
        self.now = now
        self.calendar = calendar

    # ------------------------------------------------------------------ busy
    def _busy(
        self, providers: list[ProviderRow], start: datetime, end: datetime, ignore_id: int | None
    ) -> tuple[dict[int, list[BusyInterval]], _Own | None]:
        """Each provider's booked time from the database, without the appointment ``ignore_id`` (a move), and
        that appointment's own provider and time when it is in the window."""
        with self.database.tenant_scope(self.clinic.id) as session:
            rows = store.busy_rows(session, self.clinic.id, start, end)
        busy: dict[int, list[BusyInterval]] = {p.id: [] for p in providers}
        own: _Own | None = None
        for row in rows:
            if row.id == ignore_id:
                own = _Own(row.provider_id, BusyInterval(row.starts_at, row.blocked_until))
            elif row.provider_id in busy:
                busy[row.provider_id].append(BusyInterval(row.starts_at, row.blocked_until))
        return busy, own

    def _calendar_busy(
        self, providers: list[ProviderRow], start: datetime, end: datetime, own: _Own | None
    ) -> dict[int, list[BusyInterval]]:
        with_calendar = {p.calendar_id: p.id for p in providers if p.calendar_id}
        if not with_calendar or self.calendar is None:
            return {}
        try:
            found = self.calendar.busy(list(with_calendar), start, end)
        except CalendarError as exc:
            log.warning("calendar busy lookup failed retryable=%s clinic_id=%s", exc.retryable, self.clinic.id)
            return {}
        out: dict[int, list[BusyInterval]] = {}
        for calendar_id, intervals in found.items():
            provider_id = with_calendar.get(calendar_id)
            if provider_id is not None:
                out.setdefault(provider_id, []).extend(intervals)
        if own is not None and own.provider_id in out:
            # Free/busy includes the event we wrote for the appointment being moved and answers with intervals, not
            # event ids: counted, the move clashes with itself ("not available", or handed to another provider).
            # So its provider's busy time loses the time the appointment holds now (its row's [starts_at,
            # blocked_until), which covers its event) and only that: busy time before or after it (another event,
            # or one Google merged with ours) still blocks.  Another event inside that time cannot be told from
            # ours; it already overlapped this visit.
            out[own.provider_id] = _without(out[own.provider_id], own.interval)
        return out

    def query(
        self, service: ServiceRow, providers: list[ProviderRow], start: datetime, end: datetime, *, ignore: int | None
    ) -> availability.SlotQuery:
        clinic = self.clinic
        qualified = [p for p in providers if service.id in p.service_ids]
        busy, own = self._busy(qualified, start, end, ignore)
        for provider_id, intervals in self._calendar_busy(qualified, start, end, own).items():
            busy.setdefault(provider_id, []).extend(intervals)
        return availability.SlotQuery(
            schedule=clinic.schedule,
            service=availability.ServiceSpec(service.id, service.duration_min, service.buffer_min),
            providers=[
                availability.Provider(p.id, p.name, p.service_ids, provider_hours(p, clinic)) for p in qualified
            ],
            busy=busy,
            now=self.now,
            lead_time=clinic.lead_time,
        )

    # ------------------------------------------------------------------ slots
    def open_slots(
        self,
        service: ServiceRow,
        providers: list[ProviderRow],
        first_day: date,
        last_day: date,
        *,
        time_of_day: str | None = None,
        preferred_time: str | None = None,
        ignore_appointment: int | None = None,
        limit: int = MAX_SLOTS,
    ) -> list[availability.Slot]:
        """A few offerable slots for ``service`` across ``providers`` on local days [first_day, last_day]."""
        tz = self.clinic.tz
        window_start = datetime.combine(first_day, time(0), tzinfo=tz)
        window_end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz)
        query = self.query(service, providers, window_start, window_end, ignore=ignore_appointment)
        slots = availability.candidate_slots(query, window_start, window_end)
        if time_of_day in PARTS_OF_DAY:
            lo, hi = PARTS_OF_DAY[time_of_day]
            slots = [s for s in slots if lo <= s.start.astimezone(tz).time() < hi]
        if preferred_time:
            hour, minute = (int(x) for x in preferred_time.split(":"))
            target = datetime.combine(first_day, time(hour, minute), tzinfo=tz)
            slots = sorted(slots, key=lambda s: (abs(s.start - target), s.start))
            picked = one_per_start(slots, limit)
            return sorted(picked, key=lambda s: s.start)
        return one_per_start(slots, limit, min_gap=timedelta(minutes=60))

    def iso_local(self, moment: datetime) -> str:
        return moment.astimezone(self.clinic.tz).strftime("%Y-%m-%dT%H:%M")

    def slot_dict(self, slot: availability.Slot, providers: list[ProviderRow]) -> dict[str, Any]:
        provider = next(p for p in providers if p.id == slot.provider_id)
        return {
            "start": self.iso_local(slot.start),
            "label": local_label(slot.start, self.clinic.timezone),
            "provider": provider.name,
        }

    def alternatives(
        self,
        service: ServiceRow,
        providers: list[ProviderRow],
        near: datetime,
        *,
        ignore_appointment: int | None = None,
    ) -> list[dict[str, Any]]:
        radius = timedelta(days=3)
        query = self.query(service, providers, near - radius, near + radius, ignore=ignore_appointment)
        return [
            self.slot_dict(s, providers)
            for s in availability.slots_near(query, near, limit=MAX_SLOTS - 1, radius=radius)
        ]

    def check(
        self,
        service: ServiceRow,
        providers: list[ProviderRow],
        start: datetime,
        provider: ProviderRow | None,
        *,
        ignore_appointment: int | None = None,
    ) -> ProviderRow:
        """The provider who can take ``service`` at ``start`` (the named one, or the first free), else an
        :class:`AppointmentError` with alternatives."""
        if start <= self.now:
            raise AppointmentError("that time is in the past; offer a future slot from check_availability")
        if provider is not None and service.id not in provider.service_ids:
            qualified = [p.name for p in providers if service.id in p.service_ids]
            raise AppointmentError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
        # The busy time read must cover the whole visit with its clean-up: a window of an hour after ``start``
        # missed a calendar event starting later inside a longer visit (a 75- or 90-minute treatment).
        reach = max(timedelta(hours=1), timedelta(minutes=service.duration_min + service.buffer_min))
        query = self.query(service, providers, start - timedelta(hours=1), start + reach, ignore=ignore_appointment)
        free = availability.free_providers_at(query, start)
        if provider is not None:
            free = [pid for pid in free if pid == provider.id]
        if free:
            return next(p for p in providers if p.id == free[0])
        raise AppointmentError(
            "that time is not available",
            alternatives=self.alternatives(service, providers, start, ignore_appointment=ignore_appointment),
        )
