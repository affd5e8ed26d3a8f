"""The waitlist's rules: what a patient waits for, which freed slot fits whom, in what order, how long an offer
is held, and which reply answers an offer.

Why pure: the same rules decide in the waitlist job (who is texted next), in the reply path (is this YES for an
offer) and in tests; the database side (``worker/waitlist``) only reads facts and writes what these decide.

The rules:
- an entry is a service, a provider or anyone, optional day/time windows (empty = any time the clinic is open)
  and an optional date range;
- a freed slot (an *opening*: one provider, a start, the time freed) fits an entry when the provider does the
  service (and is the one asked for, if any), the service with its buffer fits in the freed time, the start is
  inside one of the entry's windows and date range, and slot-finding would offer the service at that start with
  that provider (``domain.availability``: not on a closed date, inside the clinic's and the provider's hours, on
  the slot grid, far enough ahead for the clinic's booking lead time) — the YES books through that same check;
- an opening no service of its provider could be booked at by those rules (a holiday, outside hours) is never
  offered: it closes;
- fitting entries are offered one at a time, earliest on the list first; a patient holding another offer is
  passed over until it is answered or lapses (a YES must mean one offer);
- an offer is held for the clinic's ``waitlist_hold_minutes`` (default 15); when it lapses the next fitting
  entry is offered.  A lapsed offer may still be answered while the slot is free: the first YES books (the
  booking's exclusion constraint decides between concurrent YESes), later ones are told it was taken and stay
  on the list;
- a YES (or a NO: the next person is offered at once) answers an offer only when it is the patient's first
  message since the offer was texted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.availability import ClinicSchedule, DayHours, Provider, ServiceSpec, SlotQuery, free_providers_at

DEFAULT_HOLD_MINUTES = 15
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_END = time(23, 59)
PARTS_OF_DAY: dict[str, tuple[time, time]] = {
    "morning": (time(0), time(12)),
    "afternoon": (time(12), time(17)),
    "evening": (time(17), DAY_END),
}
ENTRY_STATUSES = ("active", "booked", "removed")
# Offers a reply may still answer (the hold running, or over while the slot may still be free).
ANSWERABLE_OFFERS = ("held", "lapsed", "taken")


class WaitlistError(ValueError):
    """A waitlist request that cannot be honoured as written (the text says why)."""


def _clock(value: str) -> time:
    parts = value.strip().split(":")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise WaitlistError(f"{value!r} is not a time like 15:00")
    hour, minute = int(parts[0]), int(parts[1])
    if hour == 24 and minute == 0:
        return DAY_END
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise WaitlistError(f"{value!r} is not a time like 15:00")
    return time(hour, minute)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday; empty = every day) and the local times a start may fall in, [start, end)."""

    weekdays: frozenset[int] = frozenset()
    start: time = time(0)
    end: time = DAY_END

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise WaitlistError("a window's start must be before its end")
        if any(not 0 <= d <= 6 for d in self.weekdays):
            raise WaitlistError("weekdays are 0 (Monday) to 6 (Sunday)")

    def contains(self, local_start: datetime) -> bool:
        if self.weekdays and local_start.weekday() not in self.weekdays:
            return False
        moment = local_start.time().replace(second=0, microsecond=0, tzinfo=None)
        return self.start <= moment < self.end or (self.end == DAY_END and moment >= DAY_END)

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [WEEKDAYS[d] for d in sorted(self.weekdays)],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        days = frozenset(WEEKDAYS.index(str(d)[:3].lower()) for d in data.get("days") or [])
        return cls(days, _clock(str(data.get("start") or "00:00")), _clock(str(data.get("end") or "23:59")))

    def describe(self) -> str:
        days = "/".join(WEEKDAYS[d].capitalize() for d in sorted(self.weekdays)) or "any day"
        if self.start == time(0) and self.end == DAY_END:
            return days
        return f"{days} {self.start.strftime('%H:%M')}-{self.end.strftime('%H:%M')}"


def windows_from_request(
    days: Sequence[str] | None = None,
    time_of_day: str | None = None,
    earliest: str | None = None,
    latest: str | None = None,
) -> tuple[Window, ...]:
    """The windows a patient asked for ("Tuesdays or Thursdays after 3", "mornings"): one window, or none (any
    time) when they gave neither days nor times."""
    weekdays: set[int] = set()
    for day in days or ():
        key = day.strip().lower()[:3]
        if key not in WEEKDAYS:
            raise WaitlistError(f"{day!r} is not a day of the week")
        weekdays.add(WEEKDAYS.index(key))
    start, end = time(0), DAY_END
    if time_of_day and time_of_day != "any":
        if time_of_day not in PARTS_OF_DAY:
            raise WaitlistError(f"{time_of_day!r} is not morning, afternoon or evening")
        start, end = PARTS_OF_DAY[time_of_day]
    if earliest:
        start = max(start, _clock(earliest))
    if latest:
        end = min(end, _clock(latest))
    if not weekdays and start == time(0) and end == DAY_END:
        return ()
    if not start < end:
        raise WaitlistError("the earliest time must be before the latest")
    return (Window(frozenset(weekdays), start, end),)


def windows_to_json(windows: Iterable[Window]) -> list[dict[str, Any]]:
    return [w.to_json() for w in windows]


def windows_from_json(data: Any) -> tuple[Window, ...]:
    return tuple(Window.from_json(w) for w in (data or []) if isinstance(w, Mapping))


@dataclass(frozen=True)
class Entry:
    id: int
    client_id: int
    service_id: int
    provider_id: int | None
    created_at: datetime
    windows: tuple[Window, ...] = ()
    date_from: date | None = None
    date_to: date | None = None


@dataclass(frozen=True)
class Opening:
    """A freed range on one provider's calendar; a waitlister is offered its start."""

    id: int
    provider_id: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class Facts:
    """What the matching reads besides the entries: the clinic's schedule (zone, hours, closed dates) and lead
    time, each service's length (duration, buffer), the services the opening's provider does and their working
    hours, and who holds another offer now."""

    schedule: ClinicSchedule
    now: datetime
    lead: timedelta
    services: Mapping[int, ServiceSpec]
    provider_services: frozenset[int]
    provider_hours: tuple[DayHours, ...]
    holding_clients: frozenset[int] = frozenset()
    already_offered: frozenset[int] = field(default_factory=frozenset)  # entry ids offered this opening before


def schedule_allows(opening: Opening, service: ServiceSpec, facts: Facts) -> bool:
    """Would slot-finding offer ``service`` at the opening's start with its provider?  Its own rules, not a copy:
    the clinic open that day (not a closed date), the visit inside the clinic's and the provider's hours, the slot
    grid, the lead time.  A YES books through the same check, so a start it refuses is one the patient would be
    told was taken."""
    query = SlotQuery(
        schedule=facts.schedule,
        service=service,
        providers=(Provider(opening.provider_id, "", frozenset({service.id}), facts.provider_hours),),
        # Busy time is the opening's own business: the caller trims the freed time to what is still free, and
        # ``fits`` checks that the visit with its buffer fits in it.
        busy={},
        now=facts.now,
        lead_time=facts.lead,
    )
    return opening.provider_id in free_providers_at(query, opening.starts_at)


def never_bookable(opening: Opening, facts: Facts) -> bool:
    """No service the provider does could be booked at the opening's start (a closed date, outside the clinic's
    or the provider's hours, too late in their day, too soon): no waitlister can be offered it, so it closes rather
    than wait for one."""
    return not any(
        schedule_allows(opening, facts.services[sid], facts) for sid in facts.provider_services if sid in facts.services
    )


def fits(entry: Entry, opening: Opening, facts: Facts) -> bool:
    """Does the opening suit this entry (without regard to order or other offers)?"""
    if entry.provider_id is not None and entry.provider_id != opening.provider_id:
        return False
    if entry.service_id not in facts.provider_services:
        return False
    service = facts.services.get(entry.service_id)
    if service is None:
        return False
    if opening.starts_at + timedelta(minutes=service.duration_min + service.buffer_min) > opening.ends_at:
        return False
    if not schedule_allows(opening, service, facts):
        return False
    local = opening.starts_at.astimezone(ZoneInfo(facts.schedule.tz))
    if entry.date_from is not None and local.date() < entry.date_from:
        return False
    if entry.date_to is not None and local.date() > entry.date_to:
        return False
    return not entry.windows or any(w.contains(local) for w in entry.windows)


def candidates(opening: Opening, entries: Iterable[Entry], facts: Facts) -> list[Entry]:
    """Entries to offer the opening to, in order: earliest on the list first; never twice for one opening, never
    to a patient holding another offer now, one entry per patient."""
    ordered = sorted(entries, key=lambda e: (e.created_at, e.id))
    chosen: list[Entry] = []
    seen: set[int] = set()
    for entry in ordered:
        if entry.id in facts.already_offered or entry.client_id in facts.holding_clients:
            continue
        if entry.client_id in seen or not fits(entry, opening, facts):
            continue
        seen.add(entry.client_id)
        chosen.append(entry)
    return chosen


def hold_minutes(policies: Mapping[str, Any]) -> int:
    """The clinic's ``waitlist_hold_minutes`` (default 15, at least 1)."""
    try:
        value = int(policies.get("waitlist_hold_minutes") or DEFAULT_HOLD_MINUTES)
    except (TypeError, ValueError):
        value = DEFAULT_HOLD_MINUTES
    return max(1, value)


def hold_expiry(now: datetime, policies: Mapping[str, Any]) -> datetime:
    return now + timedelta(minutes=hold_minutes(policies))


def answers_offer(
    offer_status: str,
    answered_at: datetime | None,
    offer_sent_at: datetime,
    slot_start: datetime,
    previous_inbound_at: datetime | None,
    now: datetime,
) -> bool:
    """Is the patient's reply (a YES) about this offer?  Only when it is unanswered, the slot is still ahead, and
    the reply is the patient's first message since the offer was texted — a YES to anything said later (a
    proposal in a new conversation) is not taken for a YES to the offer."""
    if offer_status not in ANSWERABLE_OFFERS or answered_at is not None:
        return False
    if slot_start <= now:
        return False
    return previous_inbound_at is None or previous_inbound_at < offer_sent_at


# ---------------------------------------------------------------- texts
def offer_text(clinic_name: str, service_name: str, provider_name: str, when: str, minutes: int) -> str:
    return (
        f"{clinic_name}: a {service_name} opening came up on {when} with {provider_name}. "
        f"Reply YES within {minutes} min to book it (first YES gets it)."
    )


def declined_text(service_name: str) -> str:
    return (
        f"No problem, we'll offer that {service_name} time to the next person. You're still on the waitlist and "
        "we'll text you when another one opens up."
    )


def taken_text(service_name: str) -> str:
    return (
        f"Sorry, it was taken: that {service_name} opening has just been booked. You're still on the waitlist, "
        "and we'll text you when another one opens up."
    )


def booked_text(service_name: str, provider_name: str, when: str, deposit: str | None, url: str | None) -> str:
    text = f"You're booked: {service_name} with {provider_name} on {when}. You're off the waitlist for it."
    if deposit and url:
        text += f" A {deposit} deposit holds the slot: {url}"
    elif deposit:
        text += f" A {deposit} deposit holds the slot; reply DEPOSIT for the link."
    return text


def joined_text(service_name: str, provider_name: str | None, windows: Sequence[Window], minutes: int) -> str:
    who = f" with {provider_name}" if provider_name else ""
    when = "; ".join(w.describe() for w in windows) if windows else "any time"
    return (
        f"You're on the waitlist for {service_name}{who} ({when}). When a matching time opens we'll text you, "
        f"and the first to reply YES within {minutes} min gets it."
    )
