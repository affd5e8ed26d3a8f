"""Appointment rules: the statuses and their named sets, booking, cancellation terms, the deposit decision, and
what may be moved.  The one home for these rules: the agent's tools, the staff commands, the payments flow, the
automations and the console all read them from here (SQL statements render a set with ``db.engine.sql_list``
or pass it as a bound array).

Statuses (``db/models.py`` holds the check constraint and the exclusion constraint's predicate, which must
name the same values; a new status is a new constant here, a member of the right sets, and an Alembic revision
for the check constraint):

- ``pending_deposit``: booked by the agent (or staff) for a service that takes a deposit; holds the slot until
  ``hold_expires_at``, then ``expired``.
- ``booked``: the slot is the patient's; ``confirmed``: the patient also said yes to a reminder.
- ``checked_in``: the patient arrived (still holds the provider's time); ``completed`` / ``no_show`` /
  ``late_cancelled``: what happened on the day (``domain/visits.py`` says which step may follow which);
  ``cancelled`` by patient or staff.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

# ---------------------------------------------------------------------------------------------- statuses
PENDING_DEPOSIT: Final = "pending_deposit"
BOOKED: Final = "booked"
CONFIRMED: Final = "confirmed"
CHECKED_IN: Final = "checked_in"
COMPLETED: Final = "completed"
CANCELLED: Final = "cancelled"
NO_SHOW: Final = "no_show"
EXPIRED: Final = "expired"
LATE_CANCELLED: Final = "late_cancelled"

# Every status (the table's check constraint, in the order migration 0013 wrote it).
ALL_STATUSES: Final[tuple[str, ...]] = (
    PENDING_DEPOSIT,
    BOOKED,
    CONFIRMED,
    COMPLETED,
    CANCELLED,
    NO_SHOW,
    EXPIRED,
    CHECKED_IN,
    LATE_CANCELLED,
)
# Before the day: the visit holds its slot and a patient or staff can still move or cancel it.
LIVE_STATUSES: Final[tuple[str, ...]] = (PENDING_DEPOSIT, BOOKED, CONFIRMED)
# The provider is busy: the exclusion constraint covers exactly these, and availability counts them as taken
# (a checked-in patient still holds the chair).
OCCUPYING_STATUSES: Final[tuple[str, ...]] = (*LIVE_STATUSES, CHECKED_IN)
# A firm booking (deposit settled or none needed): on the calendar, reminded, confirmable by the patient.
BOOKED_STATUSES: Final[tuple[str, ...]] = (BOOKED, CONFIRMED)
# Waiting for the deposit: not on the calendar yet, the hold runs out.
AWAITING_DEPOSIT_STATUSES: Final[tuple[str, ...]] = (PENDING_DEPOSIT,)
# The slot was given back before the visit (off the calendar): a paid deposit is settled (refunded or kept).
RELEASED_STATUSES: Final[tuple[str, ...]] = (CANCELLED, EXPIRED, LATE_CANCELLED)
# Given back by a cancellation (the patient's, staff's, or the late-cancel step's), not a hold that ran out: a paid
# deposit follows the clinic's cancellation policy.
CANCELLATION_STATUSES: Final[tuple[str, ...]] = (CANCELLED, LATE_CANCELLED)
# Expected on the day with no outcome recorded yet: the end-of-day list.
UNRESOLVED_STATUSES: Final[tuple[str, ...]] = (BOOKED, CONFIRMED, CHECKED_IN)
# What the schedule shows unless asked for everything (the visit happened, will happen, or was missed).
SCHEDULED_STATUSES: Final[tuple[str, ...]] = tuple(s for s in ALL_STATUSES if s not in RELEASED_STATUSES)
# The visit took place: aftercare, review requests, last-visit and spend segments count these.
VISITED_STATUSES: Final[tuple[str, ...]] = (COMPLETED,)

# Kinds of rows in the appointments table: a patient's visit, or a provider's blocked time.
APPOINTMENT: Final = "appointment"
BLOCK: Final = "block"

DEFAULT_CANCELLATION_WINDOW_HOURS: Final = 24.0
# How long an unpaid deposit holds its slot when the clinic names no ``deposit_hold_minutes``: the one default the
# settings (``DEPOSIT_HOLD_MINUTES``) and the clinic file's validator also start from.
DEFAULT_HOLD_MINUTES: Final = 60

DepositAction = Literal["none", "keep", "refund"]


def is_live(status: str) -> bool:
    return status in LIVE_STATUSES


# ---------------------------------------------------------------------------------------------- booking
def booking_status(deposit_cents: int) -> str:
    """A service that takes a deposit is booked as ``pending_deposit`` (the slot is held until it is paid)."""
    return PENDING_DEPOSIT if deposit_cents > 0 else BOOKED


def hold_expiry(now: datetime, deposit_cents: int, hold_minutes: int) -> datetime | None:
    """Until when an unpaid deposit holds the slot (None when no deposit is needed)."""
    return now + timedelta(minutes=hold_minutes) if deposit_cents > 0 else None


def is_same_booking(status: str, starts_at: datetime, start: datetime) -> bool:
    """Whether the appointment a booking's idempotency key already names is the booking asked for at ``start``
    (a retried tool call, a redelivered message, a repeated command), so answering with it books nothing twice.

    Only while it still holds that very time: one cancelled or expired since, or moved to another time, is an
    earlier booking — answering with it would tell the patient they are booked for a time nobody holds for them,
    so the request books anew."""
    return is_live(status) and starts_at == start


@dataclass(frozen=True)
class Timing:
    """When a visit starts, ends, and until when the provider is busy (the end plus the clean-up buffer)."""

    starts_at: datetime
    ends_at: datetime
    blocked_until: datetime


def visit_timing(start: datetime, duration_min: int, buffer_min: int) -> Timing:
    ends = start + timedelta(minutes=duration_min)
    return Timing(start, ends, ends + timedelta(minutes=buffer_min))


def moved_timing(starts_at: datetime, ends_at: datetime, blocked_until: datetime, new_start: datetime) -> Timing:
    """The same visit (same length, same buffer) at ``new_start``: how staff move an appointment or a block."""
    return Timing(new_start, new_start + (ends_at - starts_at), new_start + (blocked_until - starts_at))


# ---------------------------------------------------------------------------------------------- changes
def patient_may_change(status: str, starts_at: datetime, now: datetime) -> bool:
    """A patient may cancel, move or pay for a visit that still holds its slot and has not started."""
    return is_live(status) and starts_at > now


def staff_may_change(status: str) -> bool:
    """Staff may cancel or move anything that still holds its slot (even one that has started)."""
    return is_live(status)


# ---------------------------------------------------------------------------------------------- cancellation
@dataclass(frozen=True)
class CancellationPolicy:
    """The clinic's cancellation terms: the one reader of its cancellation settings (``clinics.policies``).

    Everything that decides or words a cancellation takes it from here, through :func:`late_cancel_money` (the
    fee and the deposit of one cancellation): the terms the patient reads (via ``domain.clinic.Clinic.cancellation``),
    the staff cancel notes, the deposit decision, and the late-cancel step of the visit lifecycle
    (``domain.visits.VisitPolicy.cancellation``), which charges the fee quoted there.  Outside the window the deposit is refunded unless ``refund_outside_window`` is false; inside it,
    it is kept unless ``refund_inside_window`` is true; a late cancellation may carry a fee (charged only by the
    explicit late-cancel step, to a card saved at booking, less a kept deposit; an ordinary cancel never charges)."""

    window_hours: float = DEFAULT_CANCELLATION_WINDOW_HOURS
    late_fee_cents: int = 0
    refund_outside_window: bool = True
    refund_inside_window: bool = False

    @classmethod
    def from_policies(cls, policies: Mapping[str, Any] | None) -> CancellationPolicy:
        """Keys: ``cancellation_window_hours`` (default 24), ``late_cancel_fee_cents`` (the fee: the key the clinic
        file, the console and the README name; it wins whenever it is set, 0 included, so a fee cleared in the
        console stays cleared) else the older ``late_fee_cents``, ``deposit_refund_outside_window`` (default true),
        ``deposit_refund_inside_window`` (default false).  A null counts as unset; a negative fee as none."""
        p = policies or {}
        window = p.get("cancellation_window_hours", DEFAULT_CANCELLATION_WINDOW_HOURS)
        fee = p.get("late_cancel_fee_cents")
        if fee is None:
            fee = p.get("late_fee_cents")
        return cls(
            window_hours=float(window or 0),
            late_fee_cents=max(0, int(fee or 0)),
            refund_outside_window=bool(p.get("deposit_refund_outside_window", True)),
            refund_inside_window=bool(p.get("deposit_refund_inside_window", False)),
        )

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_hours)


def is_late(policy: CancellationPolicy, starts_at: datetime, cancelled_at: datetime) -> bool:
    """Inside the cancellation window, measured from the moment of cancelling (so a retry decides the same)."""
    return starts_at - cancelled_at < policy.window


def deposit_decision(policy: CancellationPolicy, starts_at: datetime, cancelled_at: datetime | None) -> DepositAction:
    """Refund or keep a paid deposit when the appointment is cancelled at ``cancelled_at``.

    ``cancelled_at`` None (a hold released, never cancelled) counts as early."""
    late = cancelled_at is not None and is_late(policy, starts_at, cancelled_at)
    if late:
        return "refund" if policy.refund_inside_window else "keep"
    return "refund" if policy.refund_outside_window else "keep"


def settle_deposit(
    policy: CancellationPolicy,
    status: str,
    starts_at: datetime,
    cancelled_at: datetime | None,
    *,
    paid_cents: int,
    refund_due: bool,
) -> DepositAction:
    """What happens to a paid deposit once the slot is given back: nothing paid -> 'none'; a payment that
    arrived for a slot we no longer held (``refund_due``), or a hold we released (not a cancellation), is
    refunded whatever the policy; a cancellation — the patient's or staff's, or the late-cancel step's
    ``late_cancelled`` — is decided as :func:`late_cancel_money` decided it when it was quoted and charged."""
    if paid_cents <= 0:
        return "none"
    if refund_due or status not in CANCELLATION_STATUSES:
        return "refund"
    if cancelled_at is None:  # no moment recorded: counts as early, as deposit_decision reads it
        return deposit_decision(policy, starts_at, None)
    return late_cancel_money(policy, starts_at, cancelled_at, paid_cents).deposit_action


def money(cents: int) -> str:
    """$50, $12.50: how amounts read in texts and tool results."""
    return f"${cents // 100}" if cents % 100 == 0 else f"${cents / 100:.2f}"


def fee_after_deposit(fee_cents: int, kept_cents: int) -> int:
    """A kept deposit counts toward a fee: what is still due on top of it (never negative).  The late-cancel
    terms and the no-show step both net a fee this way, so what is charged is what the patient was told."""
    return max(0, fee_cents - kept_cents)


@dataclass(frozen=True)
class LateCancelMoney:
    """What cancelling at a given moment costs: the one statement of the fee and the deposit that the agent's
    proposal and cancel result, the staff cancel notes (console and ``medspa appointments cancel``) and the
    late-cancel step of the visit lifecycle (``domain.visits``) all read, so the fee stated is the fee charged."""

    late: bool  # inside the clinic's cancellation window
    window_hours: float
    fee_cents: int  # the late fee the policy names for this cancellation (0 when early or none set)
    deposit_paid_cents: int  # a deposit paid and not settled (0: none)
    deposit_action: DepositAction  # what happens to it: none (nothing paid) | keep | refund
    fee_due_cents: int  # the fee less a kept deposit, never negative: what is owed on top of the deposit

    @property
    def kept_cents(self) -> int:
        return self.deposit_paid_cents if self.deposit_action == "keep" else 0

    @property
    def fee(self) -> str | None:
        """The fee still due, as the patient reads it (None: nothing more is owed)."""
        return money(self.fee_due_cents) if self.fee_due_cents else None

    def fee_sentence(self) -> str:
        """The fee and what a kept deposit does to it, in one sentence ('' when no fee applies)."""
        if not self.fee_cents:
            return ""
        fee = f"A late-cancellation fee of {money(self.fee_cents)} applies"
        if not self.kept_cents:
            return f"{fee}."
        if self.fee_due_cents:
            return (
                f"{fee}; the {money(self.kept_cents)} deposit is kept toward it, "
                f"so {money(self.fee_due_cents)} more is due."
            )
        return f"{fee}; the {money(self.kept_cents)} deposit is kept and covers it, so nothing more is due."

    def deposit_sentence(self) -> str:
        """The deposit's outcome when :meth:`fee_sentence` has not already said it ('' when nothing was paid)."""
        if self.deposit_action == "keep" and not self.fee_cents:
            return f"The {money(self.deposit_paid_cents)} deposit is kept."
        if self.deposit_action == "refund":
            return f"The {money(self.deposit_paid_cents)} deposit paid will be refunded."
        return ""

    def policy_text(self) -> str:
        """The sentence the agent reads the patient (before and after cancelling)."""
        if self.late:
            head = (
                f"This is within {self.window_hours:g} hours of the appointment, so it counts as a late cancellation."
            )
        else:
            head = f"More than {self.window_hours:g} hours ahead, so there is no fee."
        return " ".join(part for part in (head, self.fee_sentence(), self.deposit_sentence()) if part)

    def staff_note(self) -> str:
        """The fee line of a staff cancellation's note and report ('' when no fee applies).  An ordinary cancel
        charges nothing, so the note says what is owed and that nobody charged it."""
        if not self.fee_cents:
            return ""
        if not self.fee_due_cents:
            return (
                f"late cancellation: the {money(self.fee_cents)} fee is covered by the "
                f"{money(self.kept_cents)} deposit kept (nothing more due)"
            )
        less = (
            f", the {money(self.fee_cents)} fee less the {money(self.kept_cents)} deposit kept"
            if self.kept_cents
            else ""
        )
        return f"late cancellation: {money(self.fee_due_cents)} fee due per policy{less} (not charged automatically)"


def late_cancel_money(
    policy: CancellationPolicy,
    starts_at: datetime,
    cancelled_at: datetime,
    deposit_paid_cents: int,
    *,
    refund_due: bool = False,
) -> LateCancelMoney:
    """The fee and the deposit of cancelling at ``cancelled_at``: the deposit by :func:`deposit_decision` (a
    ``refund_due`` payment — money for a slot we no longer held — is always refunded); the late fee inside the
    window, and a kept deposit counts toward it (:func:`fee_after_deposit`), which is what the late-cancel step
    charges."""
    late = is_late(policy, starts_at, cancelled_at)
    paid = max(0, deposit_paid_cents)
    action: DepositAction
    if not paid:
        action = "none"
    elif refund_due:
        action = "refund"
    else:
        action = deposit_decision(policy, starts_at, cancelled_at)
    fee = policy.late_fee_cents if late else 0
    return LateCancelMoney(
        late=late,
        window_hours=policy.window_hours,
        fee_cents=fee,
        deposit_paid_cents=paid,
        deposit_action=action,
        fee_due_cents=fee_after_deposit(fee, paid if action == "keep" else 0),
    )


def deposit_sentence(policy: CancellationPolicy, action: DepositAction, paid_cents: int, *, late: bool) -> str:
    """The line of a staff cancellation text about a paid deposit."""
    if action == "keep":
        if late:
            return (
                f"As this is within {policy.window_hours:g} hours of the visit, "
                f"the {money(paid_cents)} deposit is kept."
            )
        return f"Per the clinic's policy, the {money(paid_cents)} deposit is kept."
    if action == "refund":
        return f"Your {money(paid_cents)} deposit will be refunded."
    return ""
