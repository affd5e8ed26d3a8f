"""The outbox's rules: which way a row's status may move, and what a sender does with a row it is about to claim.

Why here and pure: every writer of the outbox follows one state machine — the single-row sender, the campaign
batch sender, the turn's inline claim (``worker/outbox``), the sweeper and the webhook app's delivery-status
callback (which imports nothing of the worker).  The statuses, their sets and the order live here once; the
statements that apply them live with their executors (``worker/outbox``, ``db/outbox_status.py``).

The life of a row::

    queued ──claim (a fresh claim_token)──► sending ──provider accepted──► sent ──callback──► delivered
      ▲  │                                   │  │                                            undelivered / failed
      │  │                                   │  └─ permanent provider error ──► failed
      │  │                                   └─ outcome never recorded (timeout, crash, swept) ──► unknown
      │  │                                         (reconciled with the provider, then sent or re-claimed)
      │  ├─ suppressed: the send decision said no, or what the text is about no longer holds (recorded once)
      │  └─ cancelled: withdrawn (a campaign paused or cancelled, an appointment cancelled)
      └─ released by its sender under its own token (rate limit, the recipient's window closed): attempt undone
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.appointments import BOOKED_STATUSES, COMPLETED, NO_SHOW, PENDING_DEPOSIT
from domain.audience import Decision

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
UNKNOWN = "unknown"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"

# Not finished yet: waiting to be sent, being sent, or sent with an outcome nobody recorded.
UNSENT = (QUEUED, SENDING, UNKNOWN)
# What the single-row sender may claim (an 'unknown' row is reconciled with the provider before any re-send).
CLAIMABLE = (QUEUED, UNKNOWN)
# What "sent" may be recorded over: the provider has the message, whoever holds the row now.
SENT_OVER = (SENDING, UNKNOWN)
# The provider accepted it (and maybe delivered it).
WENT_OUT = (SENT, DELIVERED)
# Never reached the patient: does not count towards the weekly marketing cap.
NEVER_REACHED = (CANCELLED, SUPPRESSED, FAILED, UNDELIVERED)

# Delivery-status callbacks move a row forward only (a late "sent" must not overwrite "delivered"); these are also
# the statuses a callback may carry.  Equal ranks may replace each other (a provider's "failed" after "undelivered").
STATUS_RANK: Mapping[str, int] = {
    QUEUED: 0,
    SENDING: 1,
    SENT: 2,
    UNKNOWN: 2,
    DELIVERED: 3,
    UNDELIVERED: 3,
    FAILED: 3,
}
# Our own verdicts, which no provider callback overrides.
NOT_THE_PROVIDERS = (SUPPRESSED, CANCELLED)


def may_advance(current: str, reported: str) -> bool:
    """May a provider's ``reported`` status replace the row's ``current`` one?  (``db/outbox_status.py`` is this
    rule as a statement.)"""
    if reported not in STATUS_RANK or current in NOT_THE_PROVIDERS:
        return False
    return STATUS_RANK.get(current, len(STATUS_RANK)) <= STATUS_RANK[reported]


# Reply kinds a patient must read in order: a later one waits for an earlier unsent one.  A safety reply
# ('safety') waits for nothing: it goes out at once, whatever is queued before it.
ORDERED_KINDS = ("reply", "compliance", "staff")
# Outbox kinds that carry a turn's replies (``TurnOutput.replies``, in order), written with their history message.
REPLY_KINDS = ("reply", "safety")
# Traffic the clinic starts in bulk: it goes behind conversation replies (queue, rate-limit reserve).
BULK_KINDS = frozenset({"campaign", "automation"})

MAX_SEND_ATTEMPTS = 8


# ------------------------------------------------------------------ what a queued text is about
# Automation kinds about a visit that happened (or was missed): the visit's status, not a live booking, decides.
_AFTER_A_VISIT = {
    "aftercare": COMPLETED,
    "review_request": COMPLETED,
    "rebook_nudge": COMPLETED,
    "win_back": COMPLETED,
    "no_show_followup": NO_SHOW,
    "deposit_reminder": PENDING_DEPOSIT,
}
_LIVE_BOOKING = BOOKED_STATUSES
APPOINTMENT_GONE = "appointment no longer live"  # the suppression / withdrawal reason recorded on the row
# Automation kinds that ask a client to come back.  They are planned only for a client with no upcoming visit
# (``worker.automations.queries``), but a planned text may wait hours (deferred to the morning) and the client may
# book meanwhile: "time to rebook" must not reach someone who just booked.  The claim reads the client's upcoming
# visit for these kinds only (``worker.outbox.store``), so no other send pays for it.
STOP_ONCE_BOOKED = frozenset({"rebook_nudge", "win_back"})
BOOKED_SINCE = "client booked a visit since"  # the suppression reason recorded on the row
# A campaign in one of these no longer sends: its queued texts wait (paused) or are withdrawn (cancelled).
STOPPED_CAMPAIGN_STATUSES = ("paused", "cancelled")


def automation_still_relevant(meta: Mapping[str, Any], appointment_status: str | None) -> bool:
    """Is the appointment an automation text is about still what the text says?  Reminders need a live booking,
    a deposit reminder a pending deposit, follow-ups the status they follow.  ``appointment_status`` None: the
    appointment is gone."""
    kind = meta.get("automation")
    if meta.get("appointment_id") is None or kind is None:
        return True
    if appointment_status is None:
        return False
    wanted = _AFTER_A_VISIT.get(str(kind))
    return appointment_status == wanted if wanted else appointment_status in _LIVE_BOOKING


def booked_since(meta: Mapping[str, Any], client_has_upcoming_visit: bool) -> bool:
    """Has the client of an automation text that asks them to come back (``STOP_ONCE_BOOKED``) booked an upcoming
    visit since it was planned?  ``client_has_upcoming_visit``: as ``worker.appointments.store.has_upcoming_visit``
    says at claim time."""
    return client_has_upcoming_visit and meta.get("automation") in STOP_ONCE_BOOKED


def subject_gone(
    kind: str,
    meta: Mapping[str, Any],
    appointment_status: str | None,
    campaign_status: str | None,
    client_has_upcoming_visit: bool = False,
) -> str | None:
    """Why a queued text must not go out because what it is about no longer holds (consent and timing are the
    send decision's), or None.  ``client_has_upcoming_visit`` is read for ``STOP_ONCE_BOOKED`` automations only
    (False for every other row)."""
    if kind == "automation" and not automation_still_relevant(meta, appointment_status):
        return APPOINTMENT_GONE
    if kind == "automation" and booked_since(meta, client_has_upcoming_visit):
        return BOOKED_SINCE
    if kind == "campaign" and campaign_status in STOPPED_CAMPAIGN_STATUSES:
        return f"campaign {campaign_status}"
    return None


def suppression_text(reason: str | None, sms_status: str | None) -> str:
    """The suppression reason recorded on the row (``outbox.error_message``) for a send decision's ``reason``."""
    return {
        "opted_out": "recipient opted out",
        "invalid_number": f"recipient number {sms_status or 'invalid'}",
        "no_consent": "no marketing consent",
        "no_phone": "no phone number",
        "frequency_cap": "weekly marketing cap reached",
    }.get(reason or "", reason or "not allowed")


# ------------------------------------------------------------------ the claim
class ClaimAction(StrEnum):
    SKIP = "skip"  # not this sender's to send: gone, finished, or claimed by another
    WAIT = "wait"  # not yet (its not_before, an earlier reply first): try again in ``wait_ms``; nothing written
    SUPPRESS = "suppress"  # never: recorded with ``reason``
    DEFER = "defer"  # the recipient's window is closed: ``not_before`` = ``until``, status kept
    GIVE_UP = "give_up"  # failed after MAX_SEND_ATTEMPTS
    CLAIM = "claim"  # queued/unknown → sending under this sender's claim token


@dataclass(frozen=True)
class Verdict:
    action: ClaimAction
    reason: str = ""
    until: datetime | None = None
    wait_ms: int = 0


@dataclass(frozen=True)
class ClaimFacts:
    """What the claim rule reads of a row, locked in the claiming transaction."""

    status: str
    kind: str
    not_before: datetime | None
    attempts: int
    earlier_unsent: bool  # an earlier reply of its conversation is still waiting to go out (ordered kinds only)
    subject_gone: str | None  # see ``subject_gone``


def millis_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() * 1000))


def claim_verdict(
    row: ClaimFacts, now: datetime, decision: Callable[[], Decision | None], sms_status: str | None = None
) -> Verdict:
    """What a sender does with a row it is about to claim, in order: someone else's or finished → skip; not due →
    wait; an earlier reply first → wait; its subject gone → suppress; the send decision (``decision()``, asked
    only when it matters; None: nothing to decide, web chat) says no → suppress, not now → defer to the next
    allowed instant (never dropped, never sent at night); tried too often → give up; else claim."""
    if row.status not in CLAIMABLE:
        return Verdict(ClaimAction.SKIP)
    if row.not_before is not None and row.not_before > now:
        return Verdict(ClaimAction.WAIT, wait_ms=int((row.not_before - now).total_seconds() * 1000))
    if row.earlier_unsent:
        return Verdict(ClaimAction.WAIT, wait_ms=100)  # a patient reads replies in order
    if row.subject_gone:
        return Verdict(ClaimAction.SUPPRESS, row.subject_gone)
    verdict = decision()
    if verdict is not None and not verdict.send:
        return Verdict(ClaimAction.SUPPRESS, suppression_text(verdict.reason, sms_status))
    if verdict is not None and verdict.deferred and verdict.send_at is not None:
        # Its moment passed into quiet hours while it waited (an 'unknown' row keeps its status: it is still
        # reconciled with the provider before any send).
        return Verdict(ClaimAction.DEFER, until=verdict.send_at, wait_ms=millis_until(verdict.send_at, now))
    if row.attempts >= MAX_SEND_ATTEMPTS:
        return Verdict(ClaimAction.GIVE_UP, "gave up after retries")
    return Verdict(ClaimAction.CLAIM)
