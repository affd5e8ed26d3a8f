"""domain/appointments.py and domain/clinic.py: statuses, cancellation terms, the deposit decision, timing, and
the clinic model's typed policies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain import appointments as rules
from domain.appointments import CancellationPolicy
from domain.clinic import Clinic, ClinicRouting, lead_time_minutes
from domain.conversation import ClinicProfile

START = datetime(2027, 4, 9, 17, 0, tzinfo=UTC)


def test_status_sets_partition_the_statuses() -> None:
    assert set(rules.OCCUPYING_STATUSES) | set(rules.RELEASED_STATUSES) | {rules.COMPLETED, rules.NO_SHOW} == set(
        rules.ALL_STATUSES
    )
    assert set(rules.OCCUPYING_STATUSES) == set(rules.LIVE_STATUSES) | {rules.CHECKED_IN}
    assert not set(rules.OCCUPYING_STATUSES) & set(rules.RELEASED_STATUSES)
    assert not set(rules.LIVE_STATUSES) & set(rules.RELEASED_STATUSES)
    assert set(rules.BOOKED_STATUSES) | set(rules.AWAITING_DEPOSIT_STATUSES) == set(rules.LIVE_STATUSES)
    assert rules.booking_status(5000) == rules.PENDING_DEPOSIT and rules.booking_status(0) == rules.BOOKED


def test_the_schema_names_the_same_statuses() -> None:
    from db.models.patients import Appointment

    checks = {c.name: str(c.sqltext) for c in Appointment.__table__.constraints if hasattr(c, "sqltext")}
    status_check = next(text for name, text in checks.items() if name and name.endswith("status_valid"))
    assert all(f"'{status}'" in status_check for status in rules.ALL_STATUSES)


@pytest.mark.parametrize(
    ("hours_before", "policies", "expected"),
    [
        (48, {}, "refund"),
        (2, {}, "keep"),
        (48, {"deposit_refund_outside_window": False}, "keep"),
        (2, {"deposit_refund_inside_window": True}, "refund"),
        (30, {"cancellation_window_hours": 48}, "keep"),
        (30, {"cancellation_window_hours": 0}, "refund"),
    ],
)
def test_deposit_decision_follows_the_clinic(hours_before: int, policies: dict, expected: str) -> None:
    policy = CancellationPolicy.from_policies(policies)
    assert rules.deposit_decision(policy, START, START - timedelta(hours=hours_before)) == expected


def test_settling_a_deposit() -> None:
    keeps = CancellationPolicy(refund_outside_window=False)
    early = START - timedelta(days=3)
    assert rules.settle_deposit(keeps, rules.CANCELLED, START, early, paid_cents=0, refund_due=False) == "none"
    assert rules.settle_deposit(keeps, rules.CANCELLED, START, early, paid_cents=5000, refund_due=False) == "keep"
    # Money that arrived for a slot we no longer held, or a hold we released, is always given back.
    assert rules.settle_deposit(keeps, rules.CANCELLED, START, early, paid_cents=5000, refund_due=True) == "refund"
    assert rules.settle_deposit(keeps, rules.EXPIRED, START, None, paid_cents=5000, refund_due=False) == "refund"


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ({}, "keep"),  # the default: kept inside the window
        ({"deposit_refund_inside_window": True}, "refund"),
    ],
)
def test_a_late_cancelled_visit_settles_its_deposit_by_the_policy(policies: dict, expected: str) -> None:
    # The late-cancel step kept (or refunded) the deposit by the clinic's policy; settling the same visit later
    # (the sweep, the refund_deposit actor) must decide the same, not refund a deposit the policy keeps.
    policy = CancellationPolicy.from_policies({"cancellation_window_hours": 24, **policies})
    inside = START - timedelta(hours=10)
    decided = rules.settle_deposit(policy, rules.LATE_CANCELLED, START, inside, paid_cents=5000, refund_due=False)
    assert decided == expected == rules.late_cancel_money(policy, START, inside, 5000).deposit_action
    # A payment for a slot we no longer held is still refunded, late-cancelled or not.
    assert rules.settle_deposit(policy, rules.LATE_CANCELLED, START, inside, paid_cents=5000, refund_due=True) == (
        "refund"
    )


def test_cancellation_terms_and_their_sentence() -> None:
    policy = CancellationPolicy.from_policies({"cancellation_window_hours": 24, "late_cancel_fee_cents": 5000})
    # Nothing paid: the whole fee, and no word about a deposit nobody paid.
    late = rules.late_cancel_money(policy, START, START - timedelta(hours=3), 0)
    assert late.late and late.fee == "$50" and late.deposit_action == "none"
    assert late.policy_text() == (
        "This is within 24 hours of the appointment, so it counts as a late cancellation. "
        "A late-cancellation fee of $50 applies."
    )
    # A $30 deposit kept inside the window counts toward the $50 fee.
    part = rules.late_cancel_money(policy, START, START - timedelta(hours=3), 3000)
    assert (part.deposit_action, part.fee_due_cents, part.fee) == ("keep", 2000, "$20")
    assert part.policy_text().endswith(
        "A late-cancellation fee of $50 applies; the $30 deposit is kept toward it, so $20 more is due."
    )
    # A $50 deposit kept covers it: nothing more is due, and the patient is not told $50 + $50.
    covered = rules.late_cancel_money(policy, START, START - timedelta(hours=3), 5000)
    assert (covered.fee_due_cents, covered.fee) == (0, None)
    assert covered.policy_text().endswith("the $50 deposit is kept and covers it, so nothing more is due.")
    early = rules.late_cancel_money(policy, START, START - timedelta(days=2), 5000)
    assert not early.late and early.fee is None and early.fee_cents == 0
    assert early.policy_text() == "More than 24 hours ahead, so there is no fee. The $50 deposit paid will be refunded."
    keeps = CancellationPolicy(refund_outside_window=False)
    kept_early = rules.late_cancel_money(keeps, START, START - timedelta(days=2), 5000)
    assert kept_early.policy_text().endswith("The $50 deposit is kept.")
    assert rules.late_cancel_money(policy, START, START - timedelta(days=2), 0).deposit_action == "none"
    # Money for a slot we no longer held is refunded whatever the policy, so it does not count toward the fee.
    owed = rules.late_cancel_money(policy, START, START - timedelta(hours=3), 5000, refund_due=True)
    assert (owed.deposit_action, owed.fee_due_cents) == ("refund", 5000)
    # The older policy key for the fee still counts.
    assert CancellationPolicy.from_policies({"late_fee_cents": 2500}).late_fee_cents == 2500


def test_staff_deposit_sentence() -> None:
    policy = CancellationPolicy()
    assert "within 24 hours" in rules.deposit_sentence(policy, "keep", 5000, late=True)
    assert (
        rules.deposit_sentence(policy, "keep", 5000, late=False) == "Per the clinic's policy, the $50 deposit is kept."
    )
    assert rules.deposit_sentence(policy, "refund", 1250, late=False) == "Your $12.50 deposit will be refunded."
    assert rules.deposit_sentence(policy, "none", 0, late=False) == ""


def test_timing_and_who_may_change() -> None:
    timing = rules.visit_timing(START, 30, 10)
    assert (timing.ends_at - START, timing.blocked_until - START) == (timedelta(minutes=30), timedelta(minutes=40))
    moved = rules.moved_timing(timing.starts_at, timing.ends_at, timing.blocked_until, START + timedelta(days=1))
    assert moved.blocked_until - moved.starts_at == timedelta(minutes=40)
    assert rules.patient_may_change(rules.BOOKED, START, START - timedelta(minutes=1))
    assert not rules.patient_may_change(rules.BOOKED, START, START)
    assert not rules.patient_may_change(rules.CANCELLED, START, START - timedelta(days=1))
    assert rules.staff_may_change(rules.PENDING_DEPOSIT) and not rules.staff_may_change(rules.COMPLETED)
    assert rules.hold_expiry(START, 5000, 60) == START + timedelta(hours=1) and rules.hold_expiry(START, 0, 60) is None


def test_a_booking_key_answers_a_retry_only_while_its_appointment_still_holds_that_time() -> None:
    # A retry of the same booking: the appointment under its key, live at the asked time.
    for status in rules.LIVE_STATUSES:
        assert rules.is_same_booking(status, START, START)
    # Given back since (cancelled, expired, late-cancelled), or moved to another time: booking that time is new.
    for status in rules.RELEASED_STATUSES:
        assert not rules.is_same_booking(status, START, START)
    assert not rules.is_same_booking(rules.BOOKED, START + timedelta(days=1, hours=2), START)


def test_the_clinic_model() -> None:
    clinic = Clinic(
        1,
        "Glow",
        "America/Los_Angeles",
        "+14155550100",
        "",
        {"mon": [["09:00", "17:00"]]},
        ["2026-12-25", {"date": "2027-01-01"}],
        {"min_notice_hours": 3, "deposit_hold_minutes": 45, "currency": "cad", "deposit_refund_outside_window": False},
        slug="glow",
        routing=ClinicRouting(sms_number="+14155550123"),
    )
    assert ClinicProfile is Clinic  # the turn's clinic is the same model
    assert clinic.tz.key == "America/Los_Angeles" and [h.weekday for h in clinic.hours] == [0]
    assert clinic.closed_dates == {date(2026, 12, 25), date(2027, 1, 1)}
    assert clinic.schedule.tz == "America/Los_Angeles" and clinic.lead_time == timedelta(hours=3)
    assert clinic.hold_minutes(30) == 45 and clinic.currency == "cad"
    assert clinic.cancellation.refund_outside_window is False
    assert clinic.routing.as_dict()["sms_number"] == "+14155550123"
    bare = Clinic(2, "Bare", "UTC", "", "", {}, [], {})
    assert bare.hold_minutes(None) == rules.DEFAULT_HOLD_MINUTES and bare.hold_minutes(60) == 60
    assert bare.lead_time == timedelta(minutes=120) and bare.currency == "usd"
    assert lead_time_minutes({"min_lead_minutes": 0}) == 0
