"""Slot computation: hours, buffers, lead time, holidays, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.availability import (
    ClinicSchedule,
    DayHours,
    Provider,
    ServiceSpec,
    Slot,
    SlotQuery,
    candidate_slots,
    find_slots,
    free_providers_at,
    slots_near,
)
from domain.ports import BusyInterval

LA = "America/Los_Angeles"
TZ = ZoneInfo(LA)
WEEKDAYS_9_TO_5 = tuple(DayHours(wd, time(9), time(17)) for wd in range(5))
SATURDAY_10_TO_2 = DayHours(5, time(10), time(14))
SCHEDULE = ClinicSchedule(LA, (*WEEKDAYS_9_TO_5, SATURDAY_10_TO_2))  # Sunday closed
TOX = ServiceSpec(100, duration_min=60, buffer_min=15)
FACIAL = ServiceSpec(200, duration_min=30)
ANNA = Provider(1, "Anna", frozenset({100, 200}), (*WEEKDAYS_9_TO_5, SATURDAY_10_TO_2))
BEN = Provider(2, "Ben", frozenset({100}), tuple(DayHours(wd, time(12), time(17)) for wd in range(1, 6)))


def la(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def busy(start: datetime, end: datetime) -> BusyInterval:
    return BusyInterval(start.astimezone(UTC), end.astimezone(UTC))


def query(**overrides: object) -> SlotQuery:
    fields: dict[str, object] = {
        "schedule": SCHEDULE,
        "service": FACIAL,
        "providers": [ANNA, BEN],
        "busy": {},
        "now": la(2026, 6, 1, 7),  # Monday 07:00
        "lead_time": timedelta(hours=2),
        "step_min": 30,
    }
    fields.update(overrides)
    return SlotQuery(**fields)  # type: ignore[arg-type]


def local_starts(slots: list[Slot]) -> list[datetime]:
    return [s.start.astimezone(TZ).replace(tzinfo=None) for s in slots]


WEEK = (la(2026, 6, 1, 0), la(2026, 6, 8, 0))


def test_first_slots_respect_opening_and_lead_time() -> None:
    slots = find_slots(query(), *WEEK, limit=3)
    assert local_starts(slots) == [datetime(2026, 6, 1, 9), datetime(2026, 6, 1, 9, 30), datetime(2026, 6, 1, 10)]
    assert all(s.provider_id == ANNA.id for s in slots)  # Ben does not do facials
    assert all(s.end - s.start == timedelta(minutes=30) for s in slots)
    assert all(s.start.utcoffset() == timedelta(0) for s in slots)


def test_lead_time_moves_first_slot() -> None:
    slots = find_slots(query(now=la(2026, 6, 1, 10, 5), step_min=15), *WEEK, limit=1)
    assert local_starts(slots) == [datetime(2026, 6, 1, 12, 15)]


def test_today_after_closing_starts_tomorrow() -> None:
    slots = find_slots(query(now=la(2026, 6, 1, 18)), *WEEK, limit=1)
    assert local_starts(slots) == [datetime(2026, 6, 2, 9)]


def test_saturday_evening_skips_closed_sunday() -> None:
    slots = find_slots(query(now=la(2026, 6, 6, 15)), la(2026, 6, 6, 0), la(2026, 6, 9, 0), limit=1)
    assert local_starts(slots) == [datetime(2026, 6, 8, 9)]


def test_no_slots_on_sunday() -> None:
    slots = candidate_slots(query(), la(2026, 6, 7, 0), la(2026, 6, 8, 0))
    assert slots == []


def test_holiday_closed() -> None:
    schedule = ClinicSchedule(LA, SCHEDULE.hours, closed_dates=frozenset({date(2026, 6, 2)}))
    slots = candidate_slots(query(schedule=schedule), la(2026, 6, 2, 0), la(2026, 6, 3, 0))
    assert slots == []


def test_busy_interval_blocks_including_buffer() -> None:
    q = query(
        service=TOX, providers=[ANNA], busy={ANNA.id: [busy(la(2026, 6, 1, 11), la(2026, 6, 1, 12))]}, step_min=15
    )
    morning = [s for s in candidate_slots(q, *WEEK) if s.start <= la(2026, 6, 1, 12)]
    # 60 min + 15 min buffer must be free before 11:00: last start 9:45; first after: 12:00.
    assert local_starts(morning) == [
        datetime(2026, 6, 1, 9),
        datetime(2026, 6, 1, 9, 15),
        datetime(2026, 6, 1, 9, 30),
        datetime(2026, 6, 1, 9, 45),
        datetime(2026, 6, 1, 12),
    ]


def test_appointment_must_end_by_closing_but_buffer_may_run_over() -> None:
    q = query(service=TOX, providers=[ANNA], step_min=15)
    monday = candidate_slots(q, la(2026, 6, 1, 0), la(2026, 6, 2, 0))
    assert local_starts(monday)[-1] == datetime(2026, 6, 1, 16)
    assert monday[-1].end.astimezone(TZ).time() == time(17)


def test_provider_hours_intersect_clinic_hours() -> None:
    q = query(service=TOX, providers=[BEN], step_min=60)
    saturday = candidate_slots(q, la(2026, 6, 6, 0), la(2026, 6, 7, 0))  # clinic 10-14, Ben 12-17
    assert local_starts(saturday) == [datetime(2026, 6, 6, 12), datetime(2026, 6, 6, 13)]
    monday = candidate_slots(q, la(2026, 6, 1, 0), la(2026, 6, 2, 0))  # Ben does not work Mondays
    assert monday == []


def test_grid_aligned_to_local_clock() -> None:
    schedule = ClinicSchedule(LA, (DayHours(0, time(9, 10), time(11)),))
    provider = Provider(1, "Anna", frozenset({200}), (DayHours(0, time(8), time(18)),))
    slots = candidate_slots(query(schedule=schedule, providers=[provider], step_min=15), *WEEK)
    assert local_starts(slots)[0] == datetime(2026, 6, 1, 9, 15)


def test_spreads_across_providers_one_slot_per_time() -> None:
    q = query(service=TOX, step_min=60, now=la(2026, 6, 2, 7))  # Tuesday: both work from 12
    slots = find_slots(q, la(2026, 6, 2, 12), la(2026, 6, 3, 0), limit=4)
    assert local_starts(slots) == [datetime(2026, 6, 2, h) for h in (12, 13, 14, 15)]
    assert [s.provider_id for s in slots] == [ANNA.id, BEN.id, ANNA.id, BEN.id]


def test_provider_filter() -> None:
    q = query(service=TOX, step_min=60, now=la(2026, 6, 2, 7), provider_id=BEN.id)
    slots = find_slots(q, la(2026, 6, 2, 0), la(2026, 6, 3, 0), limit=10)
    assert {s.provider_id for s in slots} == {BEN.id}
    assert local_starts(slots)[0] == datetime(2026, 6, 2, 12)


def test_min_gap_between_offers() -> None:
    slots = find_slots(query(), *WEEK, limit=3, min_gap=timedelta(hours=2))
    assert local_starts(slots) == [datetime(2026, 6, 1, h) for h in (9, 11, 13)]


def test_limit_and_window_end() -> None:
    slots = find_slots(query(), la(2026, 6, 1, 0), la(2026, 6, 1, 10), limit=50)
    assert local_starts(slots) == [datetime(2026, 6, 1, 9), datetime(2026, 6, 1, 9, 30)]


def test_window_in_the_past_is_empty() -> None:
    assert find_slots(query(now=la(2026, 6, 10, 12)), *WEEK) == []


def test_chronological_across_days() -> None:
    slots = candidate_slots(query(), *WEEK)
    starts = [s.start for s in slots]
    assert starts == sorted(starts)
    assert len({s.start.astimezone(TZ).date() for s in slots}) == 6  # Mon-Sat


# ---------------------------------------------------------------- DST
@pytest.mark.parametrize(
    ("before", "after", "utc_before", "utc_after"),
    [
        # spring forward on Sunday 2026-03-08: 09:00 PST = 17:00 UTC, 09:00 PDT = 16:00 UTC
        (date(2026, 3, 6), date(2026, 3, 9), 17, 16),
        # fall back on Sunday 2026-11-01: 09:00 PDT = 16:00 UTC, 09:00 PST = 17:00 UTC
        (date(2026, 10, 30), date(2026, 11, 2), 16, 17),
    ],
)
def test_opening_time_stays_local_across_dst(before: date, after: date, utc_before: int, utc_after: int) -> None:
    q = query(now=datetime.combine(before, time(0), tzinfo=TZ))
    slots = candidate_slots(
        q, datetime.combine(before, time(0), tzinfo=TZ), datetime.combine(after, time(23), tzinfo=TZ)
    )
    first_by_day: dict[date, Slot] = {}
    for slot in slots:
        first_by_day.setdefault(slot.start.astimezone(TZ).date(), slot)
    assert first_by_day[before].start.astimezone(UTC).hour == utc_before
    assert first_by_day[after].start.astimezone(UTC).hour == utc_after
    assert first_by_day[before].start.astimezone(TZ).time() == time(9)
    assert first_by_day[after].start.astimezone(TZ).time() == time(9)
    assert all(s.start.astimezone(TZ).weekday() != 6 for s in slots)  # Sunday closed


def _night_schedule(weekday: int, close: time = time(6)) -> tuple[ClinicSchedule, Provider]:
    hours = (DayHours(weekday, time(0), close),)
    return ClinicSchedule(LA, hours), Provider(1, "Night", frozenset({100}), hours)


def test_spring_forward_day_has_one_hour_less() -> None:
    schedule, provider = _night_schedule(6)
    q = query(schedule=schedule, providers=[provider], service=ServiceSpec(100, 60), step_min=60, now=la(2026, 3, 1, 0))
    slots = candidate_slots(q, la(2026, 3, 8, 0), la(2026, 3, 9, 0))
    # 00:00-06:00 local is five real hours on 2026-03-08; 02:00 does not exist.
    assert [s.start.astimezone(UTC).hour for s in slots] == [8, 9, 10, 11, 12]
    assert [s.start.astimezone(TZ).hour for s in slots] == [0, 1, 3, 4, 5]
    assert all(s.end - s.start == timedelta(hours=1) for s in slots)


def test_fall_back_day_has_one_hour_more() -> None:
    schedule, provider = _night_schedule(6, time(4))
    q = query(
        schedule=schedule, providers=[provider], service=ServiceSpec(100, 60), step_min=60, now=la(2026, 10, 25, 0)
    )
    slots = candidate_slots(q, la(2026, 11, 1, 0), la(2026, 11, 2, 0))
    # 00:00-04:00 local is five real hours on 2026-11-01; 01:00 happens twice.
    assert [s.start.astimezone(UTC).hour for s in slots] == [7, 8, 9, 10, 11]
    assert [s.start.astimezone(TZ).hour for s in slots] == [0, 1, 1, 2, 3]


# ---------------------------------------------------------------- near a preferred time
def test_slots_near_requested_time_when_taken() -> None:
    q = query(providers=[ANNA], busy={ANNA.id: [busy(la(2026, 6, 2, 13), la(2026, 6, 2, 15))]})
    near = slots_near(q, la(2026, 6, 2, 14), limit=3)
    assert local_starts(near) == [datetime(2026, 6, 2, 15), datetime(2026, 6, 2, 12, 30), datetime(2026, 6, 2, 15, 30)]


def test_slots_near_returns_requested_time_first_when_free() -> None:
    near = slots_near(query(), la(2026, 6, 2, 14), limit=2)
    assert local_starts(near)[0] == datetime(2026, 6, 2, 14)


def test_slots_near_crosses_closed_days() -> None:
    near = slots_near(query(now=la(2026, 6, 5, 12)), la(2026, 6, 7, 11), limit=3)  # Sunday request
    # Saturday closes at 14:00 (last 30-min start 13:30), Monday opens at 9:00.
    # Sat 13:00 and Mon 9:00 are both 22 h away: the earlier comes first.
    assert local_starts(near) == [datetime(2026, 6, 6, 13, 30), datetime(2026, 6, 6, 13), datetime(2026, 6, 8, 9)]


def test_free_providers_at() -> None:
    q = query(service=TOX, busy={ANNA.id: [busy(la(2026, 6, 2, 12), la(2026, 6, 2, 13))]})
    assert free_providers_at(q, la(2026, 6, 2, 12).astimezone(UTC)) == [BEN.id]
    assert free_providers_at(q, la(2026, 6, 2, 14).astimezone(UTC)) == [ANNA.id, BEN.id]
    assert free_providers_at(q, la(2026, 6, 2, 14, 10).astimezone(UTC)) == []  # off the grid


def test_rejects_naive_datetimes_and_bad_hours() -> None:
    with pytest.raises(ValueError):
        candidate_slots(query(), datetime(2026, 6, 1), datetime(2026, 6, 2))
    with pytest.raises(ValueError):
        DayHours(0, time(17), time(9))
    with pytest.raises(ValueError):
        DayHours(7, time(9), time(17))
