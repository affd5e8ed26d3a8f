"""Keeping providers' external calendars in step with appointments.

Why it is shaped this way:
- The database is the source of truth; the calendar is a copy.  A booking is
  never held up by the calendar: sync runs after the booking committed, and a
  failure leaves the booking alone (``calendar_sync`` says 'pending' while it
  is retried, 'failed' when we gave up — and a log line says so).
- Every appointment has one deterministic Google event id
  (``event_id_for(appointment_id, clinic_id)``), recorded before the first
  remote call, so a retried or redelivered sync updates the same event instead
  of creating a second one (insert → 409 → patch, inside the adapter).
- The event lives on the current provider's calendar only.  Once an event id
  was recorded, a sync also removes it from the clinic's other provider
  calendars, which is how a reschedule to another provider moves the event.
- "Done" is recorded only if the appointment still looks the way it was synced
  (status, times, provider); a reschedule racing a sync leaves the row
  'pending' and the caller syncs again.
- Events carry no PHI: service and appointment number only.

Plans are pure (:func:`plan_sync`); :func:`sync_appointment` does the I/O:
one short transaction to read and claim, the remote calls outside any
transaction, one short transaction to record the outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database, sql_list
from domain.appointments import AWAITING_DEPOSIT_STATUSES, BOOKED_STATUSES, RELEASED_STATUSES
from domain.ports import Calendar, CalendarError, CalendarEvent
from worker.integrations.google_calendar import event_id_for

log = logging.getLogger(__name__)

ON_CALENDAR = BOOKED_STATUSES  # the event should exist
OFF_CALENDAR = RELEASED_STATUSES  # the event should not exist
WAITING = AWAITING_DEPOSIT_STATUSES  # not on the calendar until the deposit is paid

# Delay before attempt n+1 after a retryable calendar failure of attempt n; its length is the attempt budget.
CALENDAR_BACKOFF_MS: tuple[int, ...] = (1_000, 5_000, 30_000, 120_000, 600_000)

Action = Literal["upsert", "delete", "none", "wait", "skip"]
Outcome = Literal["synced", "deleted", "none", "waiting", "skipped", "stale", "missing"]


@dataclass(frozen=True)
class AppointmentFacts:
    """What a sync needs to know about one appointment (read in one transaction)."""

    id: int
    clinic_id: int
    status: str
    calendar_sync: str
    starts_at: datetime
    ends_at: datetime
    provider_id: int
    calendar_id: str | None  # the provider's calendar
    calendar_event_id: str | None  # set once an event may exist somewhere
    service_name: str
    other_calendars: tuple[str, ...] = ()  # the clinic's other provider calendars


@dataclass(frozen=True)
class SyncPlan:
    action: Action
    calendar_id: str | None = None
    event_id: str | None = None
    event: CalendarEvent | None = None
    remove_from: tuple[str, ...] = ()  # calendars that must not hold the event


def calendar_retry_delay_ms(attempt: int, error: CalendarError) -> int | None:
    """How long to wait before retrying after ``attempt`` (0-based) failed with ``error``; None = give up."""
    if not error.retryable or attempt >= len(CALENDAR_BACKOFF_MS):
        return None
    return CALENDAR_BACKOFF_MS[attempt]


def calendar_event(facts: AppointmentFacts) -> CalendarEvent:
    return CalendarEvent(
        event_id=event_id_for(facts.id, facts.clinic_id),
        summary=f"{facts.service_name} (appt #{facts.id})",
        start=facts.starts_at,
        end=facts.ends_at,
        description=f"Booked via MedSpa Agent: appointment #{facts.id}. Patient details are in the clinic system.",
    )


def plan_sync(facts: AppointmentFacts, *, calendar_enabled: bool) -> SyncPlan:
    """What to do with the external calendar for this appointment."""
    if facts.calendar_sync != "pending":
        return SyncPlan("skip")
    if facts.status in WAITING:
        return SyncPlan("wait")
    event_id = event_id_for(facts.id, facts.clinic_id)
    if not calendar_enabled:
        return SyncPlan("none")
    # Once an id was recorded the event may sit on another provider's calendar (reschedule to someone else).
    elsewhere = tuple(c for c in facts.other_calendars if c != facts.calendar_id) if facts.calendar_event_id else ()
    if facts.status in ON_CALENDAR:
        if not facts.calendar_id:
            return SyncPlan("none", event_id=event_id, remove_from=elsewhere)
        return SyncPlan("upsert", facts.calendar_id, event_id, calendar_event(facts), elsewhere)
    if facts.status in OFF_CALENDAR:
        if not facts.calendar_event_id:
            return SyncPlan("none")  # never written anywhere
        return SyncPlan("delete", facts.calendar_id, event_id, None, elsewhere)
    return SyncPlan("none")  # checked_in / completed / no_show: leave whatever the calendar shows


def load_facts(database: Database, clinic_id: int, appointment_id: int) -> AppointmentFacts | None:
    with database.tenant_scope(clinic_id) as session:
        return _load_facts(session, clinic_id, appointment_id)


def _load_facts(session: Session, clinic_id: int, appointment_id: int) -> AppointmentFacts | None:
    row = (
        session.execute(
            text(
                """SELECT a.id, a.status, a.calendar_sync, a.starts_at, a.ends_at, a.provider_id, a.calendar_event_id,
                      p.calendar_id, coalesce(s.name, 'Appointment') AS service_name,
                      coalesce((SELECT array_agg(o.calendar_id ORDER BY o.id) FROM providers o
                                WHERE o.clinic_id = a.clinic_id AND o.id <> a.provider_id
                                  AND o.calendar_id IS NOT NULL), '{}') AS others
               FROM appointments a JOIN providers p ON p.id = a.provider_id
               LEFT JOIN services s ON s.id = a.service_id
               WHERE a.id = :id AND a.clinic_id = :c AND a.kind = 'appointment'"""
            ),
            {"id": appointment_id, "c": clinic_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        return None
    return AppointmentFacts(
        id=int(row["id"]),
        clinic_id=clinic_id,
        status=row["status"],
        calendar_sync=row["calendar_sync"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        provider_id=int(row["provider_id"]),
        calendar_id=row["calendar_id"],
        calendar_event_id=row["calendar_event_id"],
        service_name=row["service_name"],
        other_calendars=tuple(row["others"] or ()),
    )


def sync_appointment(database: Database, calendar: Calendar | None, clinic_id: int, appointment_id: int) -> Outcome:
    """Bring the external calendar in line with the appointment.

    ``calendar`` is None when the clinic runs database-only.  Raises
    :class:`domain.ports.CalendarError` when the calendar call failed (the
    row stays 'pending'; the caller retries or gives up with :func:`mark_failed`).
    """
    with database.tenant_scope(clinic_id) as session:
        facts = _load_facts(session, clinic_id, appointment_id)
        if facts is None:
            return "missing"
        plan = plan_sync(facts, calendar_enabled=calendar is not None)
        if plan.action == "upsert" and facts.calendar_event_id != plan.event_id:
            # Claim first: from now on a later cancel knows an event may exist, whatever happens next.
            session.execute(
                text("UPDATE appointments SET calendar_event_id = :eid WHERE id = :id"),
                {"eid": plan.event_id, "id": appointment_id},
            )
    if plan.action == "skip":
        return "skipped"
    if plan.action == "wait":
        return "waiting"
    if calendar is not None and plan.event_id:
        for other in plan.remove_from:
            calendar.delete_event(other, plan.event_id)
    if plan.action == "upsert":
        assert calendar is not None and plan.calendar_id and plan.event
        calendar.upsert_event(plan.calendar_id, plan.event)
    elif plan.action == "delete" and plan.calendar_id:
        assert calendar is not None and plan.event_id
        calendar.delete_event(plan.calendar_id, plan.event_id)
    final = "none" if plan.action == "none" else "synced"
    with database.tenant_scope(clinic_id) as session:
        done = session.execute(
            text(
                """UPDATE appointments SET calendar_sync = :final
                   WHERE id = :id AND calendar_sync = 'pending' AND status = :status AND starts_at = :start
                     AND ends_at = :end AND provider_id = :provider
                   RETURNING id"""
            ),
            {
                "final": final,
                "id": appointment_id,
                "status": facts.status,
                "start": facts.starts_at,
                "end": facts.ends_at,
                "provider": facts.provider_id,
            },
        ).scalar_one_or_none()
    if done is None:
        log.info(
            "calendar sync raced a change; syncing again",
            extra={"clinic_id": clinic_id, "appointment_id": appointment_id},
        )
        return "stale"
    outcome: Outcome = {"upsert": "synced", "delete": "deleted"}.get(plan.action, "none")  # type: ignore[assignment]
    log.info("calendar synced", extra={"clinic_id": clinic_id, "appointment_id": appointment_id, "outcome": outcome})
    return outcome


def mark_failed(database: Database, clinic_id: int, appointment_id: int) -> None:
    """Give up on this sync: the booking stays, staff see calendar_sync = 'failed'."""
    with database.tenant_scope(clinic_id) as session:
        session.execute(
            text("UPDATE appointments SET calendar_sync = 'failed' WHERE id = :id AND calendar_sync = 'pending'"),
            {"id": appointment_id},
        )


def pending_appointments(database: Database, clinic_id: int, *, settled_s: int = 5, limit: int = 200) -> list[int]:
    """Appointments whose calendar copy is due: 'pending', not waiting for a deposit, and not changed in the
    last ``settled_s`` seconds (the path that changed them usually enqueued the sync already)."""
    with database.tenant_scope(clinic_id) as session:
        return [
            int(r)
            for r in session.execute(
                text(
                    f"""SELECT id FROM appointments
                       WHERE calendar_sync = 'pending' AND kind = 'appointment' AND status NOT IN {sql_list(WAITING)}
                         AND updated_at < now() - make_interval(secs => :settled)
                       ORDER BY updated_at LIMIT :limit"""
                ),
                {"settled": settled_s, "limit": limit},
            ).scalars()
        ]
