"""The waitlist's pure rules (domain/waitlist.py) and the preferred provider (domain/preferred_provider.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.availability import ClinicSchedule, ServiceSpec, parse_hours
from domain.preferred_provider import merge_preferred, preferred_provider
from domain.waitlist import (
    DAY_END,
    Entry,
    Facts,
    Opening,
    WaitlistError,
    Window,
    answers_offer,
    booked_text,
    candidates,
    declined_text,
    fits,
    hold_expiry,
    hold_minutes,
    never_bookable,
    offer_text,
    taken_text,
    windows_from_json,
    windows_from_request,
    windows_to_json,
)

TZ = "America/Los_Angeles"
NOW = datetime(2031, 3, 3, 17, 0, tzinfo=UTC)  # Mon Mar 3, 09:00 in Los Angeles
# Wed Mar 5 2031, 15:00 local (PST = UTC-8): 23:00 UTC; 90 minutes freed.
OPENING = Opening(
    7, provider_id=1, starts_at=datetime(2031, 3, 5, 23, 0, tzinfo=UTC), ends_at=datetime(2031, 3, 6, 0, 30, tzinfo=UTC)
)
BOTOX, FILLER, LASER = 10, 11, 12
# The clinic opens 09:00-19:00 on weekdays; the provider works Wednesdays 11:00-19:00 (Glow's Sofia).
CLINIC_HOURS = parse_hours({day: "09:00-19:00" for day in ("mon", "tue", "wed", "thu", "fri")})
SCHEDULE = ClinicSchedule(TZ, CLINIC_HOURS)
PROVIDER_HOURS = parse_hours({"mon": "09:00-17:00", "wed": "11:00-19:00"})


def facts(**changes: object) -> Facts:
    base = dict(
        schedule=SCHEDULE,
        now=NOW,
        lead=timedelta(hours=2),
        services={
            BOTOX: ServiceSpec(BOTOX, 20, 10),
            FILLER: ServiceSpec(FILLER, 45, 15),
            LASER: ServiceSpec(LASER, 120),
        },
        provider_services=frozenset({BOTOX, FILLER, LASER}),
        provider_hours=PROVIDER_HOURS,
    )
    base.update(changes)
    return Facts(**base)  # type: ignore[arg-type]


def entry(entry_id: int, client: int, *, minutes_ago: int = 0, **changes: object) -> Entry:
    base: dict[str, object] = dict(
        id=entry_id,
        client_id=client,
        service_id=BOTOX,
        provider_id=None,
        created_at=NOW - timedelta(minutes=minutes_ago),
    )
    base.update(changes)
    return Entry(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- windows
def test_windows_from_a_request() -> None:
    assert windows_from_request() == ()
    assert windows_from_request(time_of_day="any") == ()
    (window,) = windows_from_request(["Tue", "thursday"], "afternoon", earliest="15:00")
    assert window.weekdays == frozenset({1, 3}) and window.start == time(15) and window.end == time(17)
    (mornings,) = windows_from_request(time_of_day="morning")
    assert mornings.weekdays == frozenset() and mornings.end == time(12)
    with pytest.raises(WaitlistError):
        windows_from_request(["someday"])
    with pytest.raises(WaitlistError):
        windows_from_request(earliest="16:00", latest="15:00")


def test_window_contains_by_weekday_and_local_time() -> None:
    window = Window(frozenset({2}), time(14), time(16))  # Wednesdays 14:00-16:00
    wednesday_3pm = OPENING.starts_at.astimezone(ZoneInfo(TZ))
    assert window.contains(wednesday_3pm)
    assert not window.contains(wednesday_3pm + timedelta(hours=1))  # 16:00: the end is exclusive
    assert not window.contains(wednesday_3pm + timedelta(days=1))  # Thursday
    assert Window().contains(wednesday_3pm.replace(hour=23, minute=59))


def test_windows_round_trip_through_json() -> None:
    windows = (Window(frozenset({0, 4}), time(9), time(12)), Window(start=time(17), end=DAY_END))
    assert windows_from_json(windows_to_json(windows)) == windows
    assert windows_to_json(windows)[0] == {"days": ["mon", "fri"], "start": "09:00", "end": "12:00"}
    assert windows_from_json(None) == ()


# ---------------------------------------------------------------- matching
def test_an_opening_fits_an_entry_only_when_everything_agrees() -> None:
    assert fits(entry(1, 100), OPENING, facts())
    assert not fits(entry(1, 100, provider_id=2), OPENING, facts())  # asked for another provider
    assert fits(entry(1, 100, provider_id=1), OPENING, facts())
    assert not fits(entry(1, 100, service_id=LASER), OPENING, facts())  # 120 minutes do not fit in 90
    assert not fits(entry(1, 100), OPENING, facts(provider_services=frozenset({FILLER})))  # provider doesn't do it
    assert not fits(entry(1, 100), OPENING, facts(now=OPENING.starts_at - timedelta(minutes=90)))  # lead time
    assert not fits(entry(1, 100, date_to=date(2031, 3, 4)), OPENING, facts())
    assert not fits(entry(1, 100, date_from=date(2031, 3, 6)), OPENING, facts())
    assert fits(entry(1, 100, date_from=date(2031, 3, 5), date_to=date(2031, 3, 5)), OPENING, facts())
    mornings = windows_from_request(time_of_day="morning")
    assert not fits(entry(1, 100, windows=mornings), OPENING, facts())
    wednesdays = windows_from_request(["wed"])
    assert fits(entry(1, 100, windows=mornings + wednesdays), OPENING, facts())  # any window will do


def _at(hour: int, minute: int = 0, minutes: int = 90) -> Opening:
    """An opening on Wednesday March 5 2031 (Los Angeles) at ``hour``:``minute``, ``minutes`` long."""
    start = datetime(2031, 3, 5, hour, minute, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    return Opening(8, provider_id=1, starts_at=start, ends_at=start + timedelta(minutes=minutes))


def test_an_opening_is_offered_only_where_slot_finding_would_offer_it() -> None:
    # The same rules as slot-finding (domain.availability), not a copy: closed dates, the clinic's and the
    # provider's hours (the visit inside both; the clean-up may run past closing), the slot grid.
    holiday = facts(schedule=ClinicSchedule(TZ, CLINIC_HOURS, frozenset({date(2031, 3, 5)})))
    assert not fits(entry(1, 100), OPENING, holiday) and never_bookable(OPENING, holiday)
    assert fits(entry(1, 100), _at(11), facts()) and not never_bookable(_at(11), facts())
    before_her_day = _at(10, 30)  # the clinic is open, the provider starts at 11:00
    assert not fits(entry(1, 100), before_her_day, facts()) and never_bookable(before_her_day, facts())
    clinic_closed = facts(schedule=ClinicSchedule(TZ, parse_hours({"wed": "09:00-14:00"})))  # she works, it doesn't
    assert not fits(entry(1, 100), OPENING, clinic_closed) and never_bookable(OPENING, clinic_closed)
    # 18:30: a 20-minute Botox ends by 19:00 (its clean-up after closing is fine), a 45-minute filler does not.
    late = _at(18, 30)
    assert fits(entry(1, 100), late, facts()) and not fits(entry(2, 200, service_id=FILLER), late, facts())
    assert not never_bookable(late, facts())
    assert never_bookable(late, facts(provider_services=frozenset({FILLER, LASER})))  # nothing of hers fits
    off_grid = _at(15, 5)  # slot-finding starts on the quarter hour; so does a booking
    assert not fits(entry(1, 100), off_grid, facts()) and never_bookable(off_grid, facts())


def test_candidates_earliest_first_once_per_opening_and_person() -> None:
    entries = [
        entry(1, 100, minutes_ago=10),
        entry(2, 200, minutes_ago=30),  # joined first
        entry(3, 300, minutes_ago=20, service_id=LASER),  # does not fit
        entry(4, 200, minutes_ago=5, service_id=FILLER),  # the same person again
        entry(5, 400, minutes_ago=1),
    ]
    assert [e.id for e in candidates(OPENING, entries, facts())] == [2, 1, 5]
    # Offered before (lapsed or skipped) and holding another offer: passed over.
    ordered = candidates(OPENING, entries, facts(already_offered=frozenset({2}), holding_clients=frozenset({100})))
    assert [e.id for e in ordered] == [4, 5]


def test_the_hold_is_a_clinic_setting_defaulting_to_15_minutes() -> None:
    assert hold_minutes({}) == 15
    assert hold_minutes({"waitlist_hold_minutes": 30}) == 30
    assert hold_minutes({"waitlist_hold_minutes": 0}) == 15
    assert hold_minutes({"waitlist_hold_minutes": "nonsense"}) == 15
    assert hold_expiry(NOW, {"waitlist_hold_minutes": 5}) == NOW + timedelta(minutes=5)


def test_a_yes_answers_an_offer_only_as_the_first_reply_since_it() -> None:
    sent = NOW
    slot = NOW + timedelta(days=2)
    assert answers_offer("held", None, sent, slot, None, NOW)
    assert answers_offer("held", None, sent, slot, sent - timedelta(hours=1), NOW)
    assert answers_offer("lapsed", None, sent, slot, None, NOW)  # a late YES: first YES still books
    assert answers_offer("taken", None, sent, slot, None, NOW)  # told "sorry, it was taken"
    assert not answers_offer("held", None, sent, slot, sent + timedelta(minutes=1), NOW)  # wrote since
    assert not answers_offer("held", sent, sent, slot, None, NOW)  # answered already
    assert not answers_offer("accepted", None, sent, slot, None, NOW)
    assert not answers_offer("skipped", None, sent, slot, None, NOW)
    assert not answers_offer("held", None, sent, NOW, None, NOW)  # the slot's time has come


def test_texts() -> None:
    offer = offer_text("Glow MedSpa", "Botox", "Dr. Lee", "Wed Mar 5 at 3:00 PM", 15)
    assert "Reply YES within 15 min" in offer and "Dr. Lee" in offer and "Wed Mar 5 at 3:00 PM" in offer
    assert "sorry, it was taken" in taken_text("Botox").lower() and "still on the waitlist" in taken_text("Botox")
    assert "still on the waitlist" in declined_text("Botox") and "next person" in declined_text("Botox")
    booked = booked_text("Botox", "Dr. Lee", "Wed Mar 5 at 3:00 PM", "$50", "https://pay.example/x")
    assert "You're booked" in booked and "https://pay.example/x" in booked


# ---------------------------------------------------------------- preferred provider
def test_preferred_provider_is_the_last_one_seen_unless_someone_was_asked_for() -> None:
    assert preferred_provider(3, None, frozenset({1, 3})) == 3
    assert preferred_provider(3, 1, frozenset({1, 3})) is None  # the patient asked for someone
    assert preferred_provider(3, None, frozenset({1})) is None  # does not do this service
    assert preferred_provider(None, None, frozenset({1})) is None


def test_merge_puts_the_preferred_first_and_leaves_room_for_a_choice() -> None:
    mine = [("09:00", 3), ("11:00", 3), ("14:00", 3), ("16:00", 3)]
    everyone = [("09:00", 1), ("09:00", 3), ("10:00", 2)]
    merged = merge_preferred(mine, everyone, 4, key=lambda s: s)
    assert merged == [("09:00", 3), ("11:00", 3), ("14:00", 3), ("09:00", 1)]
    assert merge_preferred([], everyone, 2, key=lambda s: s) == everyone[:2]
    assert merge_preferred(mine, [("09:00", 3)], 4, key=lambda s: s) == mine  # nobody else: all theirs


# ---------------------------------------------------------------- the offline policy's wording
def test_waitlist_requests_are_told_apart_from_questions_and_leaving() -> None:
    from domain.waitlist_dialogue import asks_how, asks_to_join, asks_to_leave

    for text in (
        "waitlist",
        "please put me on the waitlist for that",
        "yes add me to the wait list",
        "join the waiting list",
    ):
        assert asks_to_join(text), text
    for text in (
        "im on the waitlist any news",
        "how does the waitlist work",
        "take me off the waitlist",
        "botox please",
    ):
        assert not asks_to_join(text), text
    assert asks_how("how does the waitlist work") and asks_to_leave("take me off the waitlist")


def test_join_arguments_follow_what_the_patient_asked_for() -> None:
    from domain.timeparse import WhenSpec
    from domain.waitlist_dialogue import join_arguments

    assert join_arguments("botox", None)["date_from"] is None
    at_three = join_arguments("botox", WhenSpec(date=date(2031, 3, 5), time=time(15)))
    assert (at_three["date_from"], at_three["date_to"], at_three["earliest"], at_three["latest"]) == (
        "2031-03-05",
        "2031-03-05",
        "14:00",
        "16:00",
    )
    afternoons = join_arguments(
        "botox", WhenSpec(window=(time(12), time(17)), date=date(2031, 3, 5), until=date(2031, 3, 9))
    )
    assert (afternoons["earliest"], afternoons["latest"], afternoons["date_to"]) == ("12:00", "17:00", "2031-03-09")
    # The arguments are valid for the tool as they are.
    from domain.tools import parse_arguments

    assert parse_arguments("join_waitlist", afternoons)
