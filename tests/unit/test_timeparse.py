"""Natural date/time parsing in the clinic's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from domain.timeparse import AFTERNOON, EVENING, MORNING, Shift, parse_shift, parse_when

LA = "America/Los_Angeles"
# Wednesday 2 December 2026, 10:00 in Los Angeles (18:00 UTC)
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", d(12, 2)),
        ("tomorrow", d(12, 3)),
        ("tmrw", d(12, 3)),
        ("tommorow", d(12, 3)),
        ("tomorow", d(12, 3)),
        ("2morrow pls", d(12, 3)),
        ("day after tomorrow", d(12, 4)),
        ("friday", d(12, 4)),
        ("Fri", d(12, 4)),
        ("thursday", d(12, 3)),
        ("thrusday", d(12, 3)),
        ("saterday", d(12, 5)),
        ("this friday", d(12, 4)),
        ("monday", d(12, 7)),
        ("the 14th", d(12, 14)),
        ("on the 2nd", d(12, 2)),  # today counts
        ("the 1st", d(1, 1, 2027)),  # passed: next month
        ("the 31st", d(12, 31)),
        ("Dec 3", d(12, 3)),
        ("December 3rd", d(12, 3)),
        ("3 dec", d(12, 3)),
        ("dec 1", d(12, 1, 2027)),  # past: next year
        ("12/3", d(12, 3)),
        ("1/15", d(1, 15, 2027)),
        ("jan 15", d(1, 15, 2027)),
        ("feb 29", d(2, 29, 2028)),  # next one that exists
        ("in 2 weeks", d(12, 16)),
        ("in two weeks", d(12, 16)),
        ("in 3 days", d(12, 5)),
        ("a week from now", d(12, 9)),
        ("in a month", d(1, 2, 2027)),
        ("tuesday next week", d(12, 8)),
        ("mañana", d(12, 3)),
        ("el viernes", d(12, 4)),
        ("Sun at 2", d(12, 6)),
    ],
)
def test_dates(text: str, expected: date) -> None:
    spec = parse_when(text, NOW, LA)
    assert spec is not None
    assert spec.date == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at 3", time(15)),
        ("at 1", time(13)),
        ("at 7", time(19)),
        ("at 9", time(9)),
        ("at 11", time(11)),
        ("at 12", time(12)),
        ("3pm", time(15)),
        ("3 PM", time(15)),
        ("3p", time(15)),
        ("10am", time(10)),
        ("10 a.m.", time(10)),
        ("3:30 pm", time(15, 30)),
        ("3:30", time(15, 30)),
        ("10:45", time(10, 45)),
        ("15:00", time(15)),
        ("noon", time(12)),
        ("12am", time(0)),
        ("12pm", time(12)),
        ("at three", time(15)),
        ("around 4ish", time(16)),
        ("a las 4", time(16)),
        ("Monday @ 11", time(11)),
    ],
)
def test_times(text: str, expected: time) -> None:
    spec = parse_when(text, NOW, LA)
    assert spec is not None
    assert spec.time == expected


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("morning", MORNING),
        ("in the afternoon", AFTERNOON),
        ("evening", EVENING),
        ("after work", EVENING),
        ("por la tarde", AFTERNOON),
        ("after 3", (time(15), time(21))),
        ("before noon", (time(8), time(12))),
        ("before 11", (time(8), time(11))),
        ("between 2 and 4", (time(14), time(16))),
        ("2-4pm", (time(14), time(16))),
        ("2pm - 4pm", (time(14), time(16))),
        ("from 10 to 12", (time(10), time(12))),
        ("between 11 and 1", (time(11), time(13))),
    ],
)
def test_windows(text: str, window: tuple[time, time]) -> None:
    spec = parse_when(text, NOW, LA)
    assert spec is not None
    assert spec.window == window
    assert spec.time is None


def test_date_time_and_window_combined() -> None:
    spec = parse_when("Can I come in tmrw morning at 10:30?", NOW, LA)
    assert spec is not None
    assert (spec.date, spec.time, spec.window) == (d(12, 3), time(10, 30), MORNING)
    assert not spec.ambiguous


@pytest.mark.parametrize(
    ("text", "expected"),
    [("friday morning at 8", time(8)), ("friday evening at 6", time(18)), ("tomorrow afternoon at 1:30", time(13, 30))],
)
def test_window_decides_am_pm(text: str, expected: time) -> None:
    spec = parse_when(text, NOW, LA)
    assert spec is not None and spec.time == expected


def test_mixed_message() -> None:
    spec = parse_when("hi! could i get botox on Dec 10th around 3:15pm?", NOW, LA)
    assert spec is not None
    assert (spec.date, spec.time) == (d(12, 10), time(15, 15))


@pytest.mark.parametrize(
    ("now_local", "expected", "ambiguous"),
    [
        # Monday: the coming Friday is this week, so "next friday" is ambiguous; we pick next week's.
        (datetime(2026, 11, 30, 9), d(12, 11), True),
        # Thursday: same.
        (datetime(2026, 12, 3, 9), d(12, 11), True),
        # Friday: next week's Friday is also the next Friday: one reading.
        (datetime(2026, 12, 4, 9), d(12, 11), False),
        # Saturday: the coming Friday is in next week already.
        (datetime(2026, 12, 5, 9), d(12, 11), False),
    ],
)
def test_next_weekday_rule(now_local: datetime, expected: date, ambiguous: bool) -> None:
    now = now_local.replace(tzinfo=ZoneInfo(LA))
    spec = parse_when("next friday", now, LA)
    assert spec is not None
    assert spec.date == expected
    assert spec.ambiguous is ambiguous
    if ambiguous:
        assert "could mean" in spec.note


def test_bare_weekday_on_that_day_means_today_but_ambiguous() -> None:
    spec = parse_when("wednesday", NOW, LA)
    assert spec is not None
    assert spec.date == d(12, 2) and spec.ambiguous


def test_misspelled_wednesday() -> None:
    spec = parse_when("wendsday at 2", datetime(2026, 12, 1, 18, tzinfo=UTC), LA)  # a Tuesday
    assert spec is not None
    assert (spec.date, spec.time) == (d(12, 2), time(14))


def test_bare_eight_is_ambiguous() -> None:
    spec = parse_when("at 8", NOW, LA)
    assert spec is not None and spec.time == time(8) and spec.ambiguous


def test_explicit_past_year_is_kept_and_flagged() -> None:
    spec = parse_when("11/30/2026", NOW, LA)
    assert spec is not None and spec.date == d(11, 30) and spec.ambiguous


def test_time_already_passed_today_is_flagged() -> None:
    spec = parse_when("today at 9", NOW, LA)
    assert spec is not None and spec.date == d(12, 2) and spec.time == time(9) and spec.ambiguous


def test_weekday_mismatch_with_date_is_flagged() -> None:
    ok = parse_when("friday the 11th", NOW, LA)
    wrong = parse_when("friday the 12th", NOW, LA)
    assert ok is not None and ok.date == d(12, 11) and not ok.ambiguous
    assert wrong is not None and wrong.date == d(12, 12) and wrong.ambiguous


@pytest.mark.parametrize(
    ("text", "start", "until"),
    [
        ("next week", d(12, 7), d(12, 13)),
        ("this week", d(12, 2), d(12, 6)),
        ("this weekend", d(12, 5), d(12, 6)),
        ("next month", d(1, 1, 2027), d(1, 31, 2027)),
    ],
)
def test_ranges(text: str, start: date, until: date) -> None:
    spec = parse_when(text, NOW, LA)
    assert spec is not None
    assert (spec.date, spec.until) == (start, until)


def test_tonight_and_this_afternoon_are_today() -> None:
    tonight = parse_when("tonight", NOW, LA)
    afternoon = parse_when("this afternoon", NOW, LA)
    assert tonight is not None and (tonight.date, tonight.window) == (d(12, 2), EVENING)
    assert afternoon is not None and (afternoon.date, afternoon.window) == (d(12, 2), AFTERNOON)


def test_spanish_tomorrow_morning() -> None:
    spec = parse_when("mañana por la mañana", NOW, LA)
    assert spec is not None and (spec.date, spec.window) == (d(12, 3), MORNING)


def test_local_date_not_utc_date() -> None:
    # 2026-12-03 05:00 UTC is still 2 December, 21:00, in Los Angeles.
    spec = parse_when("tomorrow", datetime(2026, 12, 3, 5, 0, tzinfo=UTC), LA)
    assert spec is not None and spec.date == d(12, 3)


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "how much is botox?",
        "I sat down",
        "sun damage treatment",
        "do you take insurance",
        "",
        "is the hydrafacial good for acne",
    ],
)
def test_nothing_about_when(text: str) -> None:
    assert parse_when(text, NOW, LA) is None


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError):
        parse_when("tomorrow", datetime(2026, 12, 2, 10), LA)


# ---------------------------------------------------------------------------------------------- relative shifts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("actually one day later, same time", Shift(days=1, same_time=True)),
        ("an hour earlier?", Shift(minutes=-60)),
        ("how about 30 min later", Shift(minutes=30)),
        ("half an hour later", Shift(minutes=30)),
        ("can I push my appointment back an hour?", Shift(minutes=60)),
        ("need to move my botox to the following week, same time", Shift(days=7, same_time=True)),
        ("can we do the same time on friday instead?", Shift(same_time=True)),
        ("can I come in a day earlier, same time?", Shift(days=-1, same_time=True)),
        ("anything the day after?", Shift(days=1)),
        ("move my appt to the next day same time", Shift(days=1, same_time=True)),
        ("something later that day? like after 4", Shift(same_day=True, later=True)),
        ("anything earlier that day?", Shift(same_day=True, earlier=True)),
    ],
)
def test_relative_shifts(text: str, expected: Shift) -> None:
    assert parse_shift(text) == expected


@pytest.mark.parametrize("text", ["botox next week", "day after tomorrow at 3", "the 3pm one", "thursday at 4pm"])
def test_absolute_times_are_not_shifts(text: str) -> None:
    assert parse_shift(text) is None


def test_a_weekday_ruled_out_is_not_the_day_asked_for() -> None:
    tuesday = datetime(2027, 3, 2, 18, 0, tzinfo=UTC)
    when = parse_when("yes but not friday, could we do thursday instead?", tuesday, "America/Los_Angeles")
    assert when is not None and when.date == date(2027, 3, 4)
