"""domain/visits.py: which day-of steps are allowed, when, and what each sets in motion."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from domain import appointments, visits
from domain.appointments import CancellationPolicy
from domain.clinic import Clinic
from domain.visits import FollowUp, Transition, VisitFacts, VisitPolicy, can_transition, decide

START = datetime(2030, 3, 5, 18, 0, tzinfo=UTC)
END = START + timedelta(minutes=45)


def facts(status: str = "booked", **kw: object) -> VisitFacts:
    return VisitFacts(status=status, starts_at=START, ends_at=END, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("from_status", "to_status", "allowed"),
    [
        ("booked", "checked_in", True),
        ("confirmed", "checked_in", True),
        ("checked_in", "completed", True),
        ("booked", "completed", True),
        ("booked", "no_show", True),
        ("confirmed", "late_cancelled", True),
        ("checked_in", "no_show", False),  # they came
        ("checked_in", "late_cancelled", False),
        ("pending_deposit", "checked_in", False),
        ("cancelled", "completed", False),
        ("completed", "no_show", False),
        ("no_show", "completed", False),
        ("expired", "checked_in", False),
        ("late_cancelled", "no_show", False),
        ("booked", "booked", False),
        ("booked", "cancelled", False),  # an ordinary cancellation is not a day-of step
    ],
)
def test_can_transition(from_status: str, to_status: str, allowed: bool) -> None:
    assert can_transition(from_status, to_status) is allowed


def test_every_status_is_known_and_checked_in_holds_the_slot() -> None:
    assert set(appointments.OCCUPYING_STATUSES) <= set(appointments.ALL_STATUSES)
    assert "checked_in" in appointments.OCCUPYING_STATUSES and "late_cancelled" not in appointments.OCCUPYING_STATUSES
    assert "late_cancelled" in appointments.RELEASED_STATUSES
    assert set(visits.TARGET.values()) <= set(appointments.ALL_STATUSES)


def test_check_in_is_for_the_day_of_the_visit() -> None:
    policy = VisitPolicy()
    assert not decide(Transition.CHECK_IN, facts(), policy, START - timedelta(days=1)).allowed
    ok = decide(Transition.CHECK_IN, facts(), policy, START - timedelta(minutes=10))
    assert ok.allowed and ok.to_status == "checked_in" and ok.follow_ups == (FollowUp.WITHDRAW_REMINDERS,)


def test_complete_schedules_aftercare_and_review_and_needs_the_visit_to_have_started() -> None:
    policy = VisitPolicy()
    early = decide(Transition.COMPLETE, facts(), policy, START - timedelta(minutes=5))
    assert not early.allowed and "not started" in early.reason
    # Checked in early and done early: fine.
    assert decide(Transition.COMPLETE, facts("checked_in"), policy, START - timedelta(minutes=5)).allowed
    done = decide(Transition.COMPLETE, facts("checked_in", deposit_paid_cents=5000), policy, END)
    assert done.allowed and done.to_status == "completed"
    assert done.has(FollowUp.AFTERCARE) and done.has(FollowUp.REVIEW_REQUEST)
    assert not done.has(FollowUp.KEEP_DEPOSIT) and done.fee_cents == 0  # the deposit pays towards the visit


def test_a_repeat_changes_nothing_and_sets_nothing_in_motion() -> None:
    again = decide(Transition.COMPLETE, facts("completed"), VisitPolicy(), END)
    assert again.allowed and again.repeat and again.follow_ups == () and "already" in again.reason


def test_blocked_time_is_not_a_visit() -> None:
    assert not decide(Transition.NO_SHOW, facts(kind="block"), VisitPolicy(), END).allowed


def test_no_show_keeps_the_deposit_and_charges_the_rest_of_the_fee_to_a_saved_card() -> None:
    policy = VisitPolicy.from_policies({"no_show_fee_cents": 7500, "fees_on_saved_card": True})
    assert not decide(Transition.NO_SHOW, facts(), policy, START - timedelta(minutes=1)).allowed
    out = decide(
        Transition.NO_SHOW, facts(deposit_paid_cents=5000, card_saved=True), policy, START + timedelta(hours=1)
    )
    assert out.allowed and out.to_status == "no_show"
    assert out.has(FollowUp.NO_SHOW_FOLLOWUP) and out.has(FollowUp.KEEP_DEPOSIT) and out.has(FollowUp.CHARGE_FEE)
    assert (out.fee_cents, out.fee_kind) == (2500, "no_show")


def test_no_show_without_a_saved_card_is_never_charged_and_staff_are_told() -> None:
    policy = VisitPolicy.from_policies({"no_show_fee_cents": 7500})
    out = decide(Transition.NO_SHOW, facts(), policy, END)
    assert out.allowed and not out.has(FollowUp.CHARGE_FEE) and out.fee_cents == 0
    assert any("not charged" in n for n in out.notes)


def test_no_show_deposit_refund_policy_and_a_fee_covered_by_the_deposit() -> None:
    refund = VisitPolicy.from_policies({"no_show_deposit": "refund"})
    out = decide(Transition.NO_SHOW, facts(deposit_paid_cents=5000), refund, END)
    assert out.has(FollowUp.REFUND_DEPOSIT) and not out.has(FollowUp.KEEP_DEPOSIT)
    covered = VisitPolicy.from_policies({"no_show_fee_cents": 4000, "fees_on_saved_card": True})
    out = decide(Transition.NO_SHOW, facts(deposit_paid_cents=5000, card_saved=True), covered, END)
    assert out.has(FollowUp.KEEP_DEPOSIT) and not out.has(FollowUp.CHARGE_FEE) and out.fee_cents == 0


def test_late_cancel_only_inside_the_window_and_before_the_visit_ends() -> None:
    policy = VisitPolicy.from_policies({"cancellation_window_hours": 24, "late_cancel_fee_cents": 5000})
    outside = decide(Transition.LATE_CANCEL, facts(), policy, START - timedelta(hours=30))
    assert not outside.allowed and "appointments cancel" in outside.reason
    over = decide(Transition.LATE_CANCEL, facts(), policy, END + timedelta(minutes=1))
    assert not over.allowed and "no-show" in over.reason
    out = decide(Transition.LATE_CANCEL, facts(card_saved=True), policy, START - timedelta(hours=3))
    assert out.allowed and out.to_status == "late_cancelled" and out.has(FollowUp.CALENDAR)
    assert (out.fee_cents, out.fee_kind) == (5000, "late_cancel")
    generous = VisitPolicy.from_policies({"deposit_refund_inside_window": True})
    out = decide(Transition.LATE_CANCEL, facts(deposit_paid_cents=5000), generous, START - timedelta(hours=3))
    assert out.has(FollowUp.REFUND_DEPOSIT)


@pytest.mark.parametrize("fee_key", ["late_cancel_fee_cents", "late_fee_cents"])
def test_the_late_fee_the_patient_is_quoted_is_the_fee_the_late_cancel_charges(fee_key: str) -> None:
    # One clinic, either spelling of the fee: the cancel terms (agent, CLI, console cancel) and the late-cancel
    # step (CLI, console late-cancel) read the same settings, so the quote and the charge are one number.
    policies = {fee_key: 2500, "fees_on_saved_card": True, "cancellation_window_hours": 24}
    clinic = Clinic(1, "Glow", "UTC", "", "", {}, [], policies)
    now = START - timedelta(hours=3)
    terms = appointments.late_cancel_money(clinic.cancellation, START, now, 0)
    policy = VisitPolicy.from_policies(clinic.policies)
    charged = decide(Transition.LATE_CANCEL, facts(card_saved=True), policy, now)
    assert terms.late and charged.allowed
    assert terms.fee_cents == charged.fee_cents == 2500
    assert "$25" in terms.policy_text() and "$25 if you cancel within 24 hours" in policy.card_terms("Glow")


def test_one_reader_of_the_cancellation_settings() -> None:
    # Both spellings set: the documented key wins (late_cancel_fee_cents), for the quote and the charge alike.
    both = {
        "late_cancel_fee_cents": 4000,
        "late_fee_cents": 9900,
        "cancellation_window_hours": 48,
        "deposit_refund_inside_window": True,
        "deposit_refund_outside_window": False,
    }
    cancellation = CancellationPolicy.from_policies(both)
    assert cancellation.late_fee_cents == 4000
    assert (
        VisitPolicy.from_policies(both).cancellation
        == cancellation
        == Clinic(1, "G", "UTC", "", "", {}, [], both).cancellation
    )
    # Set to nothing (null) counts as unset: the older spelling is read.
    assert (
        CancellationPolicy.from_policies({"late_cancel_fee_cents": None, "late_fee_cents": 1500}).late_fee_cents == 1500
    )
    # A negative fee is no fee.
    assert CancellationPolicy.from_policies({"late_cancel_fee_cents": -5}).late_fee_cents == 0


def test_auto_no_show_is_off_by_default_and_waits_for_the_grace_period() -> None:
    assert not visits.auto_no_show_due("booked", START, START + timedelta(hours=5), VisitPolicy())
    policy = VisitPolicy.from_policies({"auto_no_show_after_minutes": 30})
    assert not visits.auto_no_show_due("booked", START, START + timedelta(minutes=29), policy)
    assert visits.auto_no_show_due("confirmed", START, START + timedelta(minutes=30), policy)
    assert not visits.auto_no_show_due("checked_in", START, START + timedelta(hours=3), policy)


def test_end_of_day_time_and_card_terms() -> None:
    policy = VisitPolicy.from_policies({"end_of_day_review_at": "18:30"})
    assert policy.end_of_day_at == time(18, 30)
    assert not visits.end_of_day_due(datetime(2030, 3, 5, 18, 29), policy)
    assert visits.end_of_day_due(datetime(2030, 3, 5, 18, 30), policy)
    assert VisitPolicy.from_policies({"end_of_day_review_at": "late"}).end_of_day_at == time(19, 0)
    assert VisitPolicy.from_policies({"no_show_fee_cents": 5000}).card_terms("Glow") == ""  # not asked for
    terms = VisitPolicy.from_policies({"no_show_fee_cents": 5000, "fees_on_saved_card": True}).card_terms("Glow")
    assert "Glow" in terms and "$50" in terms and "miss" in terms


def test_fee_key_and_summary_have_no_patient_data() -> None:
    assert visits.fee_idempotency_key(42, "no_show") == "visit-fee:no_show:42"
    line = visits.unresolved_summary("Glow", 12, "Tue Mar 5", list(range(1, 13)))
    assert "12 visits" in line and "…" in line and "medspa staff attention" in line
