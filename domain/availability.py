"""Pure appointment slot computation.

Why pure: availability is where DST, closing times, lead time and buffers
interact; keeping it free of I/O lets us test those cases exhaustively.  The
caller loads hours, providers and busy intervals; the database's exclusion
constraint remains the final guard against double booking.

Rules:
- Opening hours and provider hours are local wall-clock times in the clinic's
  zone; each day's hours are turned into absolute instants with zoneinfo, so a
  60-minute service is 60 real minutes even on a DST change day.
- Candidate starts lie on a ``step_min`` grid of local wall-clock time
  (9:00, 9:15, ...), stepped in absolute time from the first grid point.
- The appointment ``[start, start + duration)`` must lie inside both the
  clinic's and the provider's hours.  ``[start, start + duration + buffer)``
  must not overlap any busy interval of the provider; the buffer (clean-up)
  may run past closing.  Busy intervals of existing appointments should
  already include their own buffer.
- A start must be at or after ``now + lead_time`` and inside the search window.
- Closed dates (holidays) are local dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.ports import BusyInterval


@dataclass(frozen=True)
class DayHours:
    """Open from ``start`` to ``end`` (local) on ``weekday`` (0 = Monday).

    Several entries for one weekday describe split hours (a lunch break).
    Overnight hours are not supported (``end`` must be after ``start``).
    """

    weekday: int
    start: time
    end: time

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError("weekday must be 0..6")
        if self.end <= self.start:
            raise ValueError("hours must end after they start")


@dataclass(frozen=True)
class ClinicSchedule:
    tz: str
    hours: tuple[DayHours, ...]
    closed_dates: frozenset[date] = frozenset()


@dataclass(frozen=True)
class Provider:
    id: int
    name: str
    service_ids: frozenset[int]
    hours: tuple[DayHours, ...]


@dataclass(frozen=True)
class ServiceSpec:
    id: int
    duration_min: int
    buffer_min: int = 0


@dataclass(frozen=True)
class Slot:
    provider_id: int
    start: datetime  # aware, UTC
    end: datetime  # start + duration (the buffer is not part of the patient's slot)


@dataclass(frozen=True)
class SlotQuery:
    """Everything a slot search needs besides the search window."""

    schedule: ClinicSchedule
    service: ServiceSpec
    providers: Sequence[Provider]
    busy: Mapping[int, Sequence[BusyInterval]]
    now: datetime
    lead_time: timedelta = timedelta(hours=2)
    step_min: int = 15
    provider_id: int | None = None  # only this provider, when the patient asked for one


_UTC = ZoneInfo("UTC")


def _intersect(a: Sequence[tuple[time, time]], b: Sequence[tuple[time, time]]) -> list[tuple[time, time]]:
    out = []
    for a0, a1 in a:
        for b0, b1 in b:
            lo, hi = max(a0, b0), min(a1, b1)
            if lo < hi:
                out.append((lo, hi))
    return sorted(out)


def _hours_on(hours: Iterable[DayHours], weekday: int) -> list[tuple[time, time]]:
    return [(h.start, h.end) for h in hours if h.weekday == weekday]


def _local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (first occurrence when repeated;
    a time inside a spring-forward gap maps to the instant after the gap)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(_UTC)


def _first_grid_start(open_utc: datetime, zone: ZoneInfo, step: timedelta) -> datetime:
    local = open_utc.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0), tzinfo=zone)
    minutes = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)) // timedelta(minutes=1)
    remainder = minutes % int(step / timedelta(minutes=1))
    start = open_utc.replace(second=0, microsecond=0)
    if remainder or local.second or local.microsecond:
        start += step - timedelta(minutes=remainder)
    return start


def _is_free(start: datetime, end: datetime, busy: Sequence[BusyInterval]) -> bool:
    return all(not (b.start < end and start < b.end) for b in busy)


def _eligible(query: SlotQuery) -> list[Provider]:
    return [
        p
        for p in query.providers
        if query.service.id in p.service_ids and (query.provider_id is None or p.id == query.provider_id)
    ]


def candidate_slots(query: SlotQuery, window_start: datetime, window_end: datetime) -> list[Slot]:
    """Every free slot of every eligible provider with start in [window_start, window_end).

    Sorted by start, then by the providers' order in ``query.providers``.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None or query.now.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    if query.step_min <= 0 or query.service.duration_min <= 0:
        raise ValueError("step and duration must be positive")
    zone = ZoneInfo(query.schedule.tz)
    step = timedelta(minutes=query.step_min)
    duration = timedelta(minutes=query.service.duration_min)
    blocked = duration + timedelta(minutes=query.service.buffer_min)
    earliest = max(window_start, query.now + query.lead_time)
    if earliest >= window_end:
        return []
    providers = _eligible(query)
    order = {p.id: i for i, p in enumerate(providers)}
    slots: list[Slot] = []
    day = earliest.astimezone(zone).date()
    last_day = window_end.astimezone(zone).date()
    while day <= last_day:
        if day not in query.schedule.closed_dates:
            clinic = _hours_on(query.schedule.hours, day.weekday())
            for provider in providers:
                busy = sorted(query.busy.get(provider.id, ()), key=lambda b: b.start)
                for lo, hi in _intersect(clinic, _hours_on(provider.hours, day.weekday())):
                    open_utc, close_utc = _local_instant(day, lo, zone), _local_instant(day, hi, zone)
                    start = _first_grid_start(open_utc, zone, step)
                    while start + duration <= close_utc and start < window_end:
                        if start >= earliest and _is_free(start, start + blocked, busy):
                            slots.append(Slot(provider.id, start, start + duration))
                        start += step
        day += timedelta(days=1)
    slots.sort(key=lambda s: (s.start, order[s.provider_id]))
    return slots


def _spread(slots: Iterable[Slot], limit: int, min_gap: timedelta = timedelta(0)) -> list[Slot]:
    """One slot per distinct start, rotating providers so offers are not all one person's."""
    chosen: list[Slot] = []
    load: dict[int, int] = {}
    by_start: dict[datetime, list[Slot]] = {}
    for slot in slots:
        by_start.setdefault(slot.start, []).append(slot)
    for start, group in by_start.items():
        if len(chosen) >= limit:
            break
        if chosen and start - chosen[-1].start < min_gap:
            continue
        pick = min(group, key=lambda s: load.get(s.provider_id, 0))  # min is stable: first provider on ties
        load[pick.provider_id] = load.get(pick.provider_id, 0) + 1
        chosen.append(pick)
    return chosen


def find_slots(
    query: SlotQuery,
    window_start: datetime,
    window_end: datetime,
    limit: int = 5,
    min_gap: timedelta = timedelta(0),
) -> list[Slot]:
    """Up to ``limit`` offerable slots in chronological order.

    One slot per start time; when several providers are free at that time the
    one offered least so far is chosen, so offers spread across providers.
    ``min_gap`` skips starts closer than that to the previous offer (offering
    9:00, 9:15 and 9:30 by text is rarely useful).
    """
    return _spread(candidate_slots(query, window_start, window_end), limit, min_gap)


def slots_near(
    query: SlotQuery,
    preferred: datetime,
    limit: int = 3,
    radius: timedelta = timedelta(days=3),
) -> list[Slot]:
    """Free slots closest to ``preferred`` (closest first; earlier wins a tie).

    The requested time itself comes first when it is free.  Searches
    ``radius`` either side of ``preferred``.
    """
    by_start: dict[datetime, list[Slot]] = {}
    for slot in candidate_slots(query, preferred - radius, preferred + radius):
        by_start.setdefault(slot.start, []).append(slot)
    chosen: list[Slot] = []
    load: dict[int, int] = {}
    for start in sorted(by_start, key=lambda s: (abs(s - preferred), s))[:limit]:
        pick = min(by_start[start], key=lambda s: load.get(s.provider_id, 0))
        load[pick.provider_id] = load.get(pick.provider_id, 0) + 1
        chosen.append(pick)
    return chosen


def free_providers_at(query: SlotQuery, start: datetime) -> list[int]:
    """Providers (in query order) who can take the service starting exactly at ``start``."""
    return [s.provider_id for s in candidate_slots(query, start, start + timedelta(microseconds=1)) if s.start == start]


# ---------------------------------------------------------------------------------------------- hours as stored
_WEEKDAY_KEYS = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}


def _parse_clock(value: Any) -> time:
    return time.fromisoformat(str(value).strip())


def _ranges(value: Any) -> list[tuple[time, time]]:
    """One weekday's hours in any of the shapes seen in clinic JSON: closed/null, ["09:00","17:00"],
    [["09:00","12:00"],["13:00","17:00"]], {"open": "09:00", "close": "17:00"}, "09:00-17:00"."""
    if value in (None, "", "closed", [], {}, False):
        return []
    if isinstance(value, str):
        if "-" not in value:
            return []
        lo, hi = value.split("-", 1)
        return [(_parse_clock(lo), _parse_clock(hi))]
    if isinstance(value, dict):
        opens, closes = value.get("open") or value.get("start"), value.get("close") or value.get("end")
        return [(_parse_clock(opens), _parse_clock(closes))] if opens and closes else []
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, str) and "-" not in v for v in value):
            return [(_parse_clock(value[0]), _parse_clock(value[1]))]
        out: list[tuple[time, time]] = []
        for item in value:
            out.extend(_ranges(item))
        return out
    return []


def parse_hours(hours: dict[str, Any] | None) -> tuple[DayHours, ...]:
    """Clinic or provider hours JSON keyed by weekday ("mon"/"monday"/"0") into DayHours."""
    out: list[DayHours] = []
    for key, value in (hours or {}).items():
        k = str(key).strip().lower()
        weekday = int(k) if k.isdigit() else _WEEKDAY_KEYS.get(k[:3])
        if weekday is None or not 0 <= weekday <= 6:
            continue
        out.extend(DayHours(weekday, lo, hi) for lo, hi in _ranges(value) if hi > lo)
    return tuple(sorted(out, key=lambda h: (h.weekday, h.start)))


def parse_closed_dates(holidays: list[Any] | None) -> frozenset[date]:
    days: set[date] = set()
    for item in holidays or ():
        raw = item.get("date") if isinstance(item, dict) else item
        try:
            days.add(date.fromisoformat(str(raw)[:10]))
        except ValueError:
            continue
    return frozenset(days)
