"""The visit lifecycle: what may happen to an appointment on the day, and what each step implies.

Why here and pure: the front desk (``medspa appointments check-in|complete|no-show|late-cancel``), the
end-of-day job (auto no-show after the clinic's grace period) and the staff console all move a visit through
the same states; the rule of which moves are allowed, when, and what each one sets in motion (texts, deposit,
fee) lives once, here.  The worker (``worker/visits``) applies a :class:`Decision` in one transaction.

The day of a visit::

    booked / confirmed ──check in──► checked_in ──complete──► completed   (aftercare, review request)
          │   │  └────────────────────complete───────────────┘
          │   └─no-show (after the start)──► no_show        (follow-up text; deposit kept; fee on a saved card)
          └─late cancel (inside the window)──► late_cancelled (deposit per policy; fee on a saved card)

A repeat of a step already taken is not an error: it changes nothing and sets nothing in motion again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any

from domain.appointments import (
    BOOKED,
    CHECKED_IN,
    COMPLETED,
    CONFIRMED,
    LATE_CANCELLED,
    NO_SHOW,
    CancellationPolicy,
    DepositAction,
    fee_after_deposit,
    is_late,
    late_cancel_money,
    money,
)


class Transition(StrEnum):
    CHECK_IN = "check_in"
    COMPLETE = "complete"
    NO_SHOW = "no_show"
    LATE_CANCEL = "late_cancel"


TARGET: Mapping[Transition, str] = {
    Transition.CHECK_IN: CHECKED_IN,
    Transition.COMPLETE: COMPLETED,
    Transition.NO_SHOW: NO_SHOW,
    Transition.LATE_CANCEL: LATE_CANCELLED,
}

_ALLOWED_FROM: Mapping[str, frozenset[str]] = {
    CHECKED_IN: frozenset({BOOKED, CONFIRMED}),
    COMPLETED: frozenset({BOOKED, CONFIRMED, CHECKED_IN}),
    NO_SHOW: frozenset({BOOKED, CONFIRMED}),
    LATE_CANCELLED: frozenset({BOOKED, CONFIRMED}),
}


def can_transition(from_status: str, to_status: str) -> bool:
    """May an appointment in ``from_status`` move to ``to_status`` on the day (timing aside)?"""
    return from_status in _ALLOWED_FROM.get(to_status, frozenset())


class FollowUp(StrEnum):
    """What a transition sets in motion (applied by ``worker/visits`` in the transition's transaction)."""

    AFTERCARE = "aftercare"  # the aftercare automation (worker/automations.py) fires for it
    REVIEW_REQUEST = "review_request"  # the review-request automation fires for it
    NO_SHOW_FOLLOWUP = "no_show_followup"  # the no-show follow-up automation fires for it
    WITHDRAW_REMINDERS = "withdraw_reminders"  # queued reminders about it are withdrawn
    CALENDAR = "calendar"  # the calendar copy is updated (removed: the slot is free)
    KEEP_DEPOSIT = "keep_deposit"  # a paid deposit is kept
    REFUND_DEPOSIT = "refund_deposit"  # a paid deposit is refunded
    CHARGE_FEE = "charge_fee"  # a fee is charged to the card the patient saved at booking (off-session)


# The automation kinds a transition makes due: the one place that ties the lifecycle to worker/automations.py.
AUTOMATIONS: Mapping[FollowUp, str] = {
    FollowUp.AFTERCARE: "aftercare",
    FollowUp.REVIEW_REQUEST: "review_request",
    FollowUp.NO_SHOW_FOLLOWUP: "no_show_followup",
}


# ------------------------------------------------------------------ the clinic's policy
@dataclass(frozen=True)
class VisitPolicy:
    """The clinic's rules for the day of a visit (``clinics.policies``; unknown keys ignored).

    The cancellation settings (window, late fee, deposit kept or refunded) are not read here: ``cancellation`` is
    the one reader's (``domain.appointments.CancellationPolicy``), the same terms the patient is quoted when
    cancelling, so the late-cancel step charges the fee they were told."""

    cancellation: CancellationPolicy = field(default_factory=CancellationPolicy)
    no_show_deposit: str = "keep"  # keep | refund
    no_show_fee_cents: int = 0  # charged (minus a kept deposit) to a card saved at booking
    fees_on_saved_card: bool = False  # ask at deposit time to save the card for these fees
    auto_no_show_after_minutes: int = 0  # 0: off (staff mark no-shows); else after this grace past the start
    end_of_day_at: time = time(19, 0)  # clinic-local: the day's unresolved visits are listed for staff
    check_in_early_hours: float = 12  # how long before the start a check-in is accepted

    @classmethod
    def from_policies(cls, policies: Mapping[str, Any] | None) -> VisitPolicy:
        p = policies or {}
        end = p.get("end_of_day_review_at") or "19:00"
        try:
            hours, minutes = (int(x) for x in str(end).split(":")[:2])
            end_at = time(hours, minutes)
        except (ValueError, TypeError):
            end_at = time(19, 0)
        keep = str(p.get("no_show_deposit") or "keep").lower()
        return cls(
            cancellation=CancellationPolicy.from_policies(p),
            no_show_deposit="refund" if keep == "refund" else "keep",
            no_show_fee_cents=max(0, int(p.get("no_show_fee_cents", 0) or 0)),
            fees_on_saved_card=bool(p.get("fees_on_saved_card", False)),
            auto_no_show_after_minutes=max(0, int(p.get("auto_no_show_after_minutes", 0) or 0)),
            end_of_day_at=end_at,
            check_in_early_hours=float(p.get("check_in_early_hours", 12) or 0),
        )

    @property
    def asks_for_card(self) -> bool:
        """Does a deposit checkout ask to save the card for off-session fees?"""
        return self.fees_on_saved_card and (self.no_show_fee_cents > 0 or self.cancellation.late_fee_cents > 0)

    def card_terms(self, clinic_name: str) -> str:
        """The wording the patient agrees to when the card is saved (shown at checkout, kept with the payment)."""
        if not self.asks_for_card:
            return ""
        parts = []
        if self.no_show_fee_cents:
            parts.append(f"{money(self.no_show_fee_cents)} if you miss the appointment")
        if self.cancellation.late_fee_cents:
            parts.append(
                f"{money(self.cancellation.late_fee_cents)} if you cancel within "
                f"{self.cancellation.window_hours:g} hours of it"
            )
        return (
            f"{clinic_name} will save this card and may charge it {' or '.join(parts)} "
            "(less any deposit kept), per the clinic's policy."
        )


# ------------------------------------------------------------------ a decision
@dataclass(frozen=True)
class VisitFacts:
    """What the rule needs to know about one appointment (read under its row lock)."""

    status: str
    starts_at: datetime
    ends_at: datetime
    kind: str = "appointment"  # appointment | block
    deposit_paid_cents: int = 0  # a deposit paid and not refunded
    card_saved: bool = False  # the patient saved a card at booking and agreed to the fees


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # why not (one line for staff), or what a repeat is
    to_status: str = ""
    repeat: bool = False  # the step was already taken: nothing changes, nothing is set in motion again
    follow_ups: tuple[FollowUp, ...] = ()
    fee_cents: int = 0  # to charge off-session (0: none)
    fee_kind: str = ""  # no_show | late_cancel
    notes: tuple[str, ...] = ()  # what staff should know (e.g. a fee the policy names but no card to charge)

    def has(self, follow_up: FollowUp) -> bool:
        return follow_up in self.follow_ups


_VERB = {
    Transition.CHECK_IN: "checked in",
    Transition.COMPLETE: "completed",
    Transition.NO_SHOW: "marked a no-show",
    Transition.LATE_CANCEL: "late-cancelled",
}


def refused(reason: str) -> Decision:
    return Decision(False, reason)


def decide(transition: Transition, facts: VisitFacts, policy: VisitPolicy, now: datetime) -> Decision:
    """May ``transition`` happen now, and what does it set in motion?"""
    target = TARGET[transition]
    if facts.kind != "appointment":
        return refused("that is blocked time, not a visit")
    if facts.status == target:
        return Decision(True, f"already {_VERB[transition]}", to_status=target, repeat=True)
    if not can_transition(facts.status, target):
        return refused(f"the appointment is {facts.status.replace('_', ' ')}: it cannot be {_VERB[transition]}")
    timing = _timing(transition, facts, policy, now)
    if timing:
        return refused(timing)
    if transition is Transition.CHECK_IN:
        return Decision(True, to_status=target, follow_ups=(FollowUp.WITHDRAW_REMINDERS,))
    if transition is Transition.COMPLETE:
        return Decision(
            True,
            to_status=target,
            follow_ups=(FollowUp.WITHDRAW_REMINDERS, FollowUp.AFTERCARE, FollowUp.REVIEW_REQUEST),
        )
    if transition is Transition.NO_SHOW:
        deposit: DepositAction = "none"
        if facts.deposit_paid_cents:
            deposit = "keep" if policy.no_show_deposit == "keep" else "refund"
        kept = facts.deposit_paid_cents if deposit == "keep" else 0
        return _with_money(
            Decision(True, to_status=target, follow_ups=(FollowUp.WITHDRAW_REMINDERS, FollowUp.NO_SHOW_FOLLOWUP)),
            facts,
            deposit=deposit,
            fee_cents=policy.no_show_fee_cents,
            fee_due_cents=fee_after_deposit(policy.no_show_fee_cents, kept),
            fee_kind="no_show",
        )
    # Inside the window (``_timing`` refused otherwise): the deposit and the fee are the cancel terms' own, read
    # from the one statement of them, so the step charges exactly what the patient and staff were told.
    terms = late_cancel_money(policy.cancellation, facts.starts_at, now, facts.deposit_paid_cents)
    return _with_money(
        Decision(True, to_status=target, follow_ups=(FollowUp.WITHDRAW_REMINDERS, FollowUp.CALENDAR)),
        facts,
        deposit=terms.deposit_action,
        fee_cents=terms.fee_cents,
        fee_due_cents=terms.fee_due_cents,
        fee_kind="late_cancel",
    )


def _timing(transition: Transition, facts: VisitFacts, policy: VisitPolicy, now: datetime) -> str:
    if transition is Transition.CHECK_IN:
        if now < facts.starts_at - timedelta(hours=policy.check_in_early_hours):
            return "too early to check in: the visit is not today"
        return ""
    if transition is Transition.COMPLETE:
        if facts.status != CHECKED_IN and now < facts.starts_at:
            return "the visit has not started yet (check the patient in first if they are here early)"
        return ""
    if transition is Transition.NO_SHOW:
        if now < facts.starts_at:
            return "the visit has not started yet: a no-show is marked after the start time"
        return ""
    if now >= facts.ends_at:
        return "the visit time is over: mark it a no-show instead"
    if not is_late(policy.cancellation, facts.starts_at, now):
        return (
            f"outside the {policy.cancellation.window_hours:g}-hour cancellation window: "
            "a normal cancellation (medspa appointments cancel)"
        )
    return ""


def _with_money(
    decision: Decision,
    facts: VisitFacts,
    *,
    deposit: DepositAction,
    fee_cents: int,
    fee_due_cents: int,
    fee_kind: str,
) -> Decision:
    """Add a decided deposit and fee to ``decision``: ``fee_due_cents`` is already net of a kept deposit (the
    caller's rule), so this only turns it into follow-ups and staff's notes, never recomputes it."""
    follow_ups = list(decision.follow_ups)
    notes: list[str] = []
    kind = fee_kind.replace("_", " ")
    if deposit == "keep":
        follow_ups.append(FollowUp.KEEP_DEPOSIT)
        notes.append(f"deposit of {money(facts.deposit_paid_cents)} kept (clinic policy)")
    elif deposit == "refund":
        follow_ups.append(FollowUp.REFUND_DEPOSIT)
        notes.append(f"deposit of {money(facts.deposit_paid_cents)} refunded (clinic policy)")
    charge = 0
    if fee_due_cents and facts.card_saved:
        follow_ups.append(FollowUp.CHARGE_FEE)
        charge = fee_due_cents
        notes.append(f"{money(fee_due_cents)} {kind} fee charged to the card saved at booking")
    elif fee_due_cents:
        notes.append(
            f"{money(fee_due_cents)} {kind} fee per policy not charged: the patient saved no card for it at booking"
        )
    elif fee_cents:
        notes.append(f"the {money(fee_cents)} {kind} fee is covered by the deposit kept (nothing more due)")
    return Decision(
        True,
        to_status=decision.to_status,
        follow_ups=tuple(follow_ups),
        fee_cents=charge,
        fee_kind=fee_kind if charge else "",
        notes=tuple(notes),
    )


def fee_idempotency_key(appointment_id: int, fee_kind: str) -> str:
    """The Stripe Idempotency-Key of a visit's fee: every retry of the charge is the same charge."""
    return f"visit-fee:{fee_kind}:{appointment_id}"


# ------------------------------------------------------------------ the end of the day
def auto_no_show_due(status: str, starts_at: datetime, now: datetime, policy: VisitPolicy) -> bool:
    """Should the end-of-day job mark this visit a no-show (the clinic turned it on; the grace period passed)?"""
    if not policy.auto_no_show_after_minutes or status not in (BOOKED, CONFIRMED):
        return False
    return now >= starts_at + timedelta(minutes=policy.auto_no_show_after_minutes)


def end_of_day_due(local_now: datetime, policy: VisitPolicy) -> bool:
    """Has the clinic's day ended (clinic-local), so that its unresolved visits are listed for staff?"""
    return local_now.time() >= policy.end_of_day_at


def unresolved_summary(clinic_name: str, count: int, day_label: str, ids: list[int]) -> str:
    """The staff notification listing the day's unresolved visits (no patient names: ids only)."""
    shown = ", ".join(str(i) for i in ids[:10]) + (" …" if len(ids) > 10 else "")
    return (
        f"{clinic_name}: {count} visit{'s' if count != 1 else ''} on {day_label} still without an outcome "
        f"(appointments {shown}). Run: medspa staff attention"
    )
