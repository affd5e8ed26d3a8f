"""When and to whom staff hear about handoffs: every handoff is notified, several within a short window go out as
one notification, nothing non-urgent reaches staff during their quiet hours (it waits for the end of them, never
dropped), and an urgent or emergency handoff goes out at once, quiet hours or not.  Pure: plain data in and out.

The immediate urgent page of the turn itself (``worker/turns.py``: an urgent or emergency handoff texts the
clinic's ``oncall_phone`` in the turn's own commit) stays the fastest path; an urgent notification therefore
skips that number (it was paged already) and reaches the rest of the on-call list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

URGENT = frozenset({"urgent", "emergency"})
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str) -> time:
    """``"21:30"`` → 21:30; anything else raises ValueError (a clear message for a settings form)."""
    match = _HHMM.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00-23:59)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class QuietHours:
    """Staff quiet hours in the clinic's time zone; ``start`` > ``end`` spans midnight (21:00-07:00)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, moment: datetime, timezone: str) -> datetime:
        """The first instant at or after ``moment`` that is outside quiet hours (``moment`` itself if it is)."""
        zone = ZoneInfo(timezone)
        local = moment.astimezone(zone)
        if not self.contains(local.time()):
            return moment
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(moment.tzinfo)


@dataclass(frozen=True)
class NotifyPolicy:
    """A clinic's handoff notification settings."""

    sms_numbers: tuple[str, ...]
    emails: tuple[str, ...]
    quiet_hours: QuietHours | None
    batch_window: timedelta
    timezone: str
    already_paged: str | None = None  # the number the turn pages itself for urgent handoffs (clinics.oncall_phone)


@dataclass(frozen=True)
class PendingAlert:
    id: int
    conversation_id: int
    urgency: str
    created_at: datetime

    @property
    def urgent(self) -> bool:
        return self.urgency in URGENT


@dataclass(frozen=True)
class Plan:
    """Send these alerts now as one notification, or wait until ``wait_until`` (nothing pending: neither)."""

    send: tuple[PendingAlert, ...] = ()
    wait_until: datetime | None = None
    why: str = ""


def plan(pending: list[PendingAlert], policy: NotifyPolicy, now: datetime) -> Plan:
    """The one decision: what goes out now.

    - urgent alerts pending → they go now, on their own (urgent bypasses batching and quiet hours; the others
      keep batching);
    - otherwise, inside quiet hours → wait for their end;
    - otherwise the batch goes when its oldest alert has waited ``batch_window`` (so every alert arriving within
      the window of the first rides along); until then, wait.
    """
    if not pending:
        return Plan(why="nothing pending")
    ordered = tuple(sorted(pending, key=lambda a: (a.created_at, a.id)))
    urgent = tuple(a for a in ordered if a.urgent)
    if urgent:
        return Plan(send=urgent, why="urgent")
    if policy.quiet_hours is not None and policy.quiet_hours.contains(now.astimezone(ZoneInfo(policy.timezone)).time()):
        return Plan(wait_until=policy.quiet_hours.end_after(now, policy.timezone), why="quiet hours")
    due = ordered[0].created_at + policy.batch_window
    if now >= due:
        return Plan(send=ordered, why="batch window over")
    return Plan(wait_until=due, why="batching")


def sms_recipients(batch: tuple[PendingAlert, ...], policy: NotifyPolicy) -> tuple[str, ...]:
    """Who gets the text: the on-call list, without the number the turn already paged when every alert of the
    batch is urgent (each of those paged it at once)."""
    numbers = tuple(dict.fromkeys(policy.sms_numbers))
    if batch and all(a.urgent for a in batch) and policy.already_paged:
        return tuple(n for n in numbers if n != policy.already_paged)
    return numbers


def summary(clinic_name: str, batch: tuple[PendingAlert, ...], inbox_url: str) -> str:
    """The notification's text: counts, urgencies and conversation ids, never a patient's name or words."""
    urgent = sum(1 for a in batch if a.urgent)
    ids = ", ".join(str(a.conversation_id) for a in batch[:8]) + (" …" if len(batch) > 8 else "")
    if len(batch) == 1:
        head = f"{clinic_name}: new {batch[0].urgency} handoff (conversation {batch[0].conversation_id})."
    else:
        head = f"{clinic_name}: {len(batch)} new handoffs" + (f", {urgent} urgent" if urgent else "") + f" ({ids})."
    return f"{head} Open the inbox: {inbox_url}"
