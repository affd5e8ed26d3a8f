"""Handoff notifications: every handoff reaches the on-call staff — texts through the outbox to the clinic's
on-call numbers, and an email — batched, outside staff quiet hours, urgent ones at once (the rules:
``domain/handoff_notify.py``).

- An alert row (``handoff_alerts``) is written in the commit that hands a conversation off: the turn's fenced
  commit (``worker/conversations.py`` queues ``INSERT_ALERT`` with its other statements) and a quarantine.  A
  rolled-back turn leaves no alert; a committed handoff always has one.
- After that commit the turn enqueues ``notify_handoffs`` by name; the scheduled ``sweep_handoff_notifications``
  runs the same step for every clinic with alerts waiting (a lost enqueue, the end of a batch window or of quiet
  hours).
- ``notify`` decides under a per-clinic advisory lock (concurrent runs queue, none double-sends): the batch's
  notification row, the alerts marked with it, and the texts queued in the outbox commit together; the caller
  enqueues the texts' sends after the commit.  Emails go out afterwards, one notification row locked at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database
from domain.handoff_notify import NotifyPolicy, PendingAlert, QuietHours, parse_hhmm, plan, sms_recipients, summary
from domain.ports import EmailSender, OutboundEmail
from medspa.settings import Settings
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows

log = logging.getLogger(__name__)

# In the handing-off transaction (psycopg placeholders: the turn's commit runs on the raw connection).
INSERT_ALERT = """
INSERT INTO handoff_alerts (clinic_id, conversation_id, urgency, dedupe_key) VALUES (%s, %s, %s, %s)
ON CONFLICT (clinic_id, dedupe_key) DO NOTHING
"""
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('handoff_notify'), CAST(:clinic_id AS int))")
_PENDING = text(
    """SELECT id, conversation_id, urgency, created_at FROM handoff_alerts
       WHERE batch_id IS NULL ORDER BY id LIMIT 500"""
)
_SETTINGS = text(
    """SELECT sms_numbers, emails, quiet_start, quiet_end, batch_window_s
       FROM handoff_notify_settings WHERE clinic_id = :clinic_id"""
)
_INSERT_NOTIFICATION = text(
    """INSERT INTO handoff_notifications (clinic_id, alerts, urgent, body, email_to, email_status)
       VALUES (:clinic_id, :alerts, :urgent, :body, CAST(:email_to AS text[]), :email_status) RETURNING id"""
)
_MARK_ALERTS = text("UPDATE handoff_alerts SET batch_id = :batch WHERE id = ANY(CAST(:ids AS bigint[]))")
_SET_OUTBOX = text("UPDATE handoff_notifications SET outbox_ids = CAST(:ids AS bigint[]) WHERE id = :id")
_EMAIL_DUE = text(
    """SELECT id, email_to, body, alerts, urgent FROM handoff_notifications
       WHERE email_status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"""
)
_EMAILED = text("UPDATE handoff_notifications SET email_status = 'sent', emailed_at = now() WHERE id = :id")
_CLINICS_WAITING = text(
    """SELECT EXISTS (SELECT 1 FROM handoff_alerts WHERE batch_id IS NULL)
           OR EXISTS (SELECT 1 FROM handoff_notifications WHERE email_status = 'pending')"""
)


def alert_params(clinic_id: int, conversation_id: int, urgency: str, key: str) -> tuple[Any, ...]:
    """``INSERT_ALERT``'s parameters; ``key`` makes a retried commit write one alert, not two."""
    return (clinic_id, conversation_id, urgency or "normal", key[:120])


@dataclass(frozen=True)
class ClinicFacts:
    """What the step needs of the clinic (``Container.clinic``'s profile and routing)."""

    clinic_id: int
    name: str
    timezone: str
    sms_number: str
    oncall_phone: str | None


@dataclass
class NotifyResult:
    notification_id: int | None = None
    alerts: int = 0
    outbox_ids: list[int] = field(default_factory=list)
    wait_until: datetime | None = None
    why: str = ""
    emails_sent: int = 0


def parse_quiet_hours(value: str) -> QuietHours | None:
    """``"21:00-07:00"`` → QuietHours; ``""`` → None; anything else raises ValueError."""
    if not value.strip():
        return None
    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f"{value!r}: quiet hours are HH:MM-HH:MM")
    return QuietHours(parse_hhmm(start), parse_hhmm(end))


def load_policy(session: Session, clinic: ClinicFacts, settings: Settings) -> NotifyPolicy:
    """The clinic's settings row over the environment's defaults; no on-call list → the clinic's on-call phone."""
    row = session.execute(_SETTINGS, {"clinic_id": clinic.clinic_id}).mappings().one_or_none()
    quiet = parse_quiet_hours(settings.handoff_notify_quiet_hours)
    window = settings.handoff_notify_batch_s
    numbers: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    if row is not None:
        numbers, emails = tuple(row["sms_numbers"] or ()), tuple(row["emails"] or ())
        if row["quiet_start"] is not None and row["quiet_end"] is not None:  # "" and "": none at this clinic
            start, end = row["quiet_start"], row["quiet_end"]
            quiet = QuietHours(parse_hhmm(start), parse_hhmm(end)) if start and end else None
        if row["batch_window_s"] is not None:
            window = int(row["batch_window_s"])
    if not numbers and clinic.oncall_phone:
        numbers = (clinic.oncall_phone,)
    return NotifyPolicy(
        sms_numbers=numbers,
        emails=emails,
        quiet_hours=quiet,
        batch_window=timedelta(seconds=window),
        timezone=clinic.timezone,
        already_paged=clinic.oncall_phone,
    )


def notify(database: Database, clinic: ClinicFacts, settings: Settings, now: datetime) -> NotifyResult:
    """One step for one clinic: send what is due as one notification, or say until when to wait."""
    with database.tenant_scope(clinic.clinic_id) as session:
        session.execute(_LOCK, {"clinic_id": clinic.clinic_id})
        pending = [
            PendingAlert(int(r["id"]), int(r["conversation_id"]), str(r["urgency"]), r["created_at"])
            for r in session.execute(_PENDING).mappings()
        ]
        policy = load_policy(session, clinic, settings)
        decided = plan(pending, policy, now)
        if not decided.send:
            return NotifyResult(wait_until=decided.wait_until, why=decided.why)
        batch = decided.send
        inbox = f"{settings.console_public_url.rstrip('/')}/clinics/{clinic.clinic_id}/inbox"
        body = summary(clinic.name, batch, inbox)
        urgent = any(a.urgent for a in batch)
        notification_id = int(
            session.execute(
                _INSERT_NOTIFICATION,
                {
                    "clinic_id": clinic.clinic_id,
                    "alerts": len(batch),
                    "urgent": urgent,
                    "body": body,
                    "email_to": list(policy.emails),
                    "email_status": "pending" if policy.emails else "none",
                },
            ).scalar_one()
        )
        session.execute(_MARK_ALERTS, {"batch": notification_id, "ids": [a.id for a in batch]})
        rows = [
            OutboxRow(
                channel="sms",
                kind="notification",
                to_address=number,
                from_address=clinic.sms_number,
                body=body,
                client_id=None,
                conversation_id=None,  # about several conversations; never ordered behind a patient's texts
                priority=0,
                meta={"handoff_notification": notification_id},
                dedupe_key=f"handoff-notify:{notification_id}:{number}",
            )
            for number in sms_recipients(batch, policy)
        ]
        outbox_ids = insert_rows(session, clinic.clinic_id, rows) if rows else []
        session.execute(_SET_OUTBOX, {"ids": outbox_ids, "id": notification_id})
    log.info(
        "handoff notification queued",
        extra={
            "clinic_id": clinic.clinic_id,
            "notification_id": notification_id,
            "alerts": len(batch),
            "urgent": urgent,
            "texts": len(outbox_ids),
            "why": decided.why,
        },
    )
    return NotifyResult(notification_id, len(batch), outbox_ids, why=decided.why)


def send_emails(database: Database, clinic_id: int, email: EmailSender, *, limit: int = 20) -> int:
    """Email every notification still waiting for it.  Each row stays locked while its email goes out (a short
    SMTP exchange with a timeout), so two runs never email the same notification; a failure raises and leaves
    the row pending for the next run."""
    sent = 0
    for _ in range(limit):
        with database.tenant_scope(clinic_id) as session:
            row = session.execute(_EMAIL_DUE).mappings().one_or_none()
            if row is None:
                return sent
            subject = ("URGENT: " if row["urgent"] else "") + (
                "a new handoff" if row["alerts"] == 1 else f"{row['alerts']} new handoffs"
            )
            email.send(OutboundEmail(tuple(row["email_to"]), f"MedSpa console: {subject}", str(row["body"])))
            session.execute(_EMAILED, {"id": row["id"]})
            sent += 1
    return sent


def clinics_waiting(database: Database, clinic_ids: Sequence[int]) -> list[int]:
    """The clinics with alerts not notified yet or emails not sent yet (one short tenant-scoped read each)."""
    waiting = []
    for clinic_id in clinic_ids:
        with database.tenant_scope(clinic_id) as session:
            if session.execute(_CLINICS_WAITING).scalar_one():
                waiting.append(clinic_id)
    return waiting


# ------------------------------------------------------------------ a clinic's settings (the console edits them)
_UPSERT_SETTINGS = text(
    """INSERT INTO handoff_notify_settings (clinic_id, sms_numbers, emails, quiet_start, quiet_end, batch_window_s)
       VALUES (:clinic_id, CAST(:sms_numbers AS text[]), CAST(:emails AS text[]), :quiet_start, :quiet_end,
               :batch_window_s)
       ON CONFLICT (clinic_id) DO UPDATE SET sms_numbers = EXCLUDED.sms_numbers, emails = EXCLUDED.emails,
           quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
           batch_window_s = EXCLUDED.batch_window_s, updated_at = now()"""
)
_RECENT = text(
    """SELECT id, alerts, urgent, created_at, cardinality(outbox_ids) AS texts, email_status
       FROM handoff_notifications ORDER BY id DESC LIMIT :limit"""
)


@dataclass(frozen=True)
class StoredSettings:
    sms_numbers: list[str]
    emails: list[str]
    quiet_hours: str | None  # "HH:MM-HH:MM", "" (none at this clinic), None (the default)
    batch_window_s: int | None  # None: the default


def read_settings(session: Session, clinic_id: int) -> StoredSettings:
    row = session.execute(_SETTINGS, {"clinic_id": clinic_id}).mappings().one_or_none()
    if row is None:
        return StoredSettings([], [], None, None)
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = f"{row['quiet_start']}-{row['quiet_end']}" if row["quiet_start"] else ""
    return StoredSettings(list(row["sms_numbers"]), list(row["emails"]), quiet, row["batch_window_s"])


def save_settings(session: Session, clinic_id: int, stored: StoredSettings) -> None:
    """``quiet_hours`` must already be valid (``parse_quiet_hours``)."""
    start = end = None
    if stored.quiet_hours is not None:
        start, _, end = stored.quiet_hours.partition("-") if stored.quiet_hours else ("", "", "")
    session.execute(
        _UPSERT_SETTINGS,
        {
            "clinic_id": clinic_id,
            "sms_numbers": stored.sms_numbers,
            "emails": stored.emails,
            "quiet_start": start,
            "quiet_end": end,
            "batch_window_s": stored.batch_window_s,
        },
    )


def recent_notifications(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(_RECENT, {"limit": limit}).mappings()]
