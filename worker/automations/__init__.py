"""Automations: the texts a clinic sends on its own — booking confirmation,
reminders 24 h and 2 h ahead, deposit reminder, aftercare, review request,
rebooking nudge, no-show follow-up, win-back.

How "once, at the right moment" holds across restarts and replicas:
- nothing is remembered in Redis or in delayed messages; every scan reads from
  Postgres what is due *now* (``now`` from the container's clock), within a
  validity window per kind, so a scan missed while nothing ran is covered by
  the next one and stale messages are never sent late;
- every message has a deterministic dedupe key (``auto:aftercare:appt:42``; a
  text that names the visit's time carries its start too,
  ``auto:reminder_24h:appt:42:at:20270408T190000Z``, so a moved visit is due
  its reminders again for the new time: ``rules.dedupe_key``) and the outbox's
  unique ``(clinic_id, dedupe_key)`` turns a racing second scanner's insert
  into a no-op; only the scanner that inserted enqueues it;
- the appointment's status is read in the same transaction that inserts the
  outbox row, with the row locked, so a cancelled appointment gets no
  reminder; ``withdraw_appointment_messages`` withdraws queued ones when an
  appointment is cancelled or moved afterwards;
- recipients we must not text (opted out, invalid number, marketing without
  opt-in, weekly cap) get a ``suppressed`` row with the reason: recorded once,
  never retried;
- a message that falls in quiet hours is simply not created yet: the scan that
  runs after the window opens creates it, while it is still valid;
- the sender decides again at the moment of sending (``worker/outbox``):
  a text that waited past its window (rate limits, retries, a provider outage)
  is deferred to the recipient's next allowed instant, and one whose recipient
  opted out meanwhile is suppressed.

Modules: ``rules`` (what each due visit gets, the scan over an ``AutomationStore`` port; unit-tested on fakes)
and ``queries`` (the Postgres side: the due queries, inserts, withdrawals and reminder replies).
"""

from __future__ import annotations

from worker.automations.queries import (
    PostgresAutomations,
    confirm_by_reply,
    follow_up_delay,
    handle_reminder_reply,
    load_automations,
    scan_clinic,
    withdraw_appointment_messages,
)
from worker.automations.rules import AutomationSpec, ScanResult, scan

__all__ = [
    "AutomationSpec",
    "PostgresAutomations",
    "ScanResult",
    "confirm_by_reply",
    "follow_up_delay",
    "handle_reminder_reply",
    "load_automations",
    "scan",
    "scan_clinic",
    "withdraw_appointment_messages",
]
