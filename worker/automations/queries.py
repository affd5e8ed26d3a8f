"""The automations' queries (SQLAlchemy's ``:name`` dialect): which visits each kind is due for, the clinic's
enabled automations, the insert of the planned texts, withdrawing texts about a cancelled or moved appointment,
and confirming an appointment by a reply to its reminder.  The rules they apply are ``worker.automations.rules``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.clinics import load_clinic
from db.engine import Database, sql_list
from domain.appointments import AWAITING_DEPOSIT_STATUSES, BOOKED_STATUSES, NO_SHOW, VISITED_STATUSES
from domain.outbox import DELIVERED, SENDING, SENT, UNKNOWN
from domain.templates import (
    AUTOMATION_PLACEHOLDERS,
    Template,
    confirmation_reply,
    first_name,
    reminder_reply_intent,
    when_label,
)
from worker.appointments.store import has_upcoming_visit
from worker.automations.rules import (
    FOLLOW_UP_KINDS,
    REMINDER_KINDS,
    SCAN_LIMIT,
    AutomationPlan,
    AutomationSpec,
    Created,
    DueVisit,
    ScanResult,
    SendingClinic,
    is_reminder,
    names_the_time,
    reminder_until,
    scan,
)
from worker.outbox.planning import RECIPIENT_COLUMNS, marketing_counts
from worker.outbox.writes import insert_rows, withdraw_automation_messages

log = logging.getLogger(__name__)


# The appointment, its client, service and provider, and how many marketing texts the client got (this
# week and ever: the frequency cap and the first-message opt-out footer).  Shared by every automation query.
_APPOINTMENT_FACTS = f"""
    a.id AS appointment_id, a.client_id, a.starts_at, a.ends_at, c.name, {RECIPIENT_COLUMNS},
    s.name AS service_name, s.category AS service_category, p.name AS provider_name,
    coalesce(m.week, 0) AS week, coalesce(m.ever, 0) AS ever
    FROM appointments a
    JOIN clients c ON c.id = a.client_id
    LEFT JOIN services s ON s.id = a.service_id
    LEFT JOIN providers p ON p.id = a.provider_id
    {marketing_counts("a.client_id")}
"""


def _dedupe_key(appointment_id: str, starts_at: str) -> str:
    """SQL: ``rules.dedupe_key`` of the ``:kind`` text about the appointment whose id and start are the SQL
    expressions given (``:names_the_time`` is ``rules.names_the_time(kind)``).  The due queries skip a visit whose
    key exists: with the start in it, a moved visit is due again for its new time."""
    at = f"to_char({starts_at} AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"')"
    return (
        f"'auto:' || CAST(:kind AS text) || ':appt:' || {appointment_id}"
        f" || CASE WHEN CAST(:names_the_time AS boolean) THEN ':at:' || {at} ELSE '' END"
    )


_BASE = f"""
    SELECT {_APPOINTMENT_FACTS}
    WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.client_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                        AND x.dedupe_key = {_dedupe_key("a.id", "a.starts_at")})
"""

# A visit that happened here, not history brought in by an import (``medspa appointments import-visits``): the
# texts that follow a visit (aftercare, review request, no-show follow-up) are for those only, however recent the
# imported date.  The rebook nudge and win-back read the client's last visit, imported or not (the point of
# importing it), and are marketing: only a client with a marketing grant gets them.
_LIVE_VISIT = "a.imported_at IS NULL"
_BOOKED = sql_list(BOOKED_STATUSES)
_VISITED = sql_list(VISITED_STATUSES)

# Per kind: extra WHERE conditions on the appointment (binds :now, :start_after, :valid_for, :since).
_APPOINTMENT_RULES: dict[str, str] = {
    # Booked by staff, phone or web chat in the last half day; an SMS booking was confirmed in its own thread.
    "confirmation": f"""a.status IN {_BOOKED} AND a.starts_at > :now
        AND a.created_at > :now - :valid_for AND a.created_at <= :now
        AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.id = a.conversation_id AND v.channel = 'sms')""",
    # From `offset` before the start until the next (shorter) reminder takes over; only if booked before that.
    "reminder": f"""a.status IN {_BOOKED}
        AND a.starts_at - :offset <= :now AND :now < a.starts_at - :until_before
        AND a.created_at <= a.starts_at - :offset""",
    "deposit_reminder": f"""a.status IN {sql_list(AWAITING_DEPOSIT_STATUSES)}
        AND a.hold_expires_at > :now + interval '2 minutes' AND a.created_at + :offset <= :now""",
    "aftercare": f"""a.status IN {_VISITED} AND {_LIVE_VISIT}
        AND a.ends_at + :offset <= :now AND :now < a.ends_at + :offset + :valid_for""",
    "review_request": f"""a.status IN {_VISITED} AND {_LIVE_VISIT} AND a.ends_at + :offset <= :now
        AND :now < a.ends_at + :offset + :valid_for
        AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.client_id = a.client_id
                          AND r.meta->>'automation' = 'review_request' AND r.created_at > :now - :since)""",
    "no_show_followup": f"""a.status = '{NO_SHOW}' AND {_LIVE_VISIT} AND a.ends_at + :offset <= :now
        AND :now < a.ends_at + :offset + :valid_for""",
}

# The client has a visit ahead of them or under way (the agent's definition of upcoming): a patient who already
# booked, or is in the chair right now, is not asked to rebook or told we miss them.  A text planned here may wait
# for the morning; the sender's claim asks again (``domain.outbox.STOP_ONCE_BOOKED``).
_UPCOMING = has_upcoming_visit("a.client_id", ":now")

# Client-level kinds: the client's most recent completed visit decides.
_REBOOK = f"""
    SELECT * FROM (
        SELECT DISTINCT ON (a.client_id) a.id AS appointment_id, a.client_id, a.starts_at, a.ends_at, c.name,
               {RECIPIENT_COLUMNS}, s.name AS service_name, s.category AS service_category,
               p.name AS provider_name, coalesce(m.week, 0) AS week, coalesce(m.ever, 0) AS ever
        FROM appointments a
        JOIN clients c ON c.id = a.client_id
        JOIN services s ON s.id = a.service_id AND s.rebook_interval_days IS NOT NULL
        LEFT JOIN providers p ON p.id = a.provider_id
        {marketing_counts("a.client_id")}
        WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.status IN {_VISITED}
          AND a.starts_at + make_interval(days => s.rebook_interval_days) + :offset <= :now
          AND :now < a.starts_at + make_interval(days => s.rebook_interval_days) + :offset + :valid_for
          AND NOT {_UPCOMING}
          AND NOT EXISTS (SELECT 1 FROM appointments later WHERE later.client_id = a.client_id
                            AND later.service_id = a.service_id AND later.status IN {_VISITED}
                            AND later.starts_at > a.starts_at)
          AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                            AND x.dedupe_key = {_dedupe_key("a.id", "a.starts_at")})
        ORDER BY a.client_id, a.starts_at DESC) due
    ORDER BY appointment_id LIMIT :limit
"""

_WIN_BACK = f"""
    SELECT * FROM (
        SELECT DISTINCT ON (a.client_id) {_APPOINTMENT_FACTS}
        WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.status IN {_VISITED}
          AND NOT {_UPCOMING}
        ORDER BY a.client_id, a.starts_at DESC) last_visit
    WHERE starts_at + :offset <= :now AND :now < starts_at + :offset + :valid_for
      AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                        AND x.dedupe_key = {_dedupe_key("appointment_id", "starts_at")})
    ORDER BY appointment_id LIMIT :limit
"""

_ENABLED = "SELECT kind, template, settings FROM automations WHERE clinic_id = :c AND enabled ORDER BY id"
# The patient's latest reminder (or booking confirmation) that went out, or may have, in the last days.
_LAST_REMINDED = f"""
SELECT (o.meta->>'appointment_id')::bigint FROM outbox o
WHERE o.clinic_id = :c AND o.client_id = :client AND o.kind = 'automation'
  AND o.meta->>'automation' IN {sql_list(sorted(REMINDER_KINDS))}
  AND o.status IN {sql_list((SENDING, SENT, DELIVERED, UNKNOWN))}
  AND coalesce(o.sent_at, o.created_at) > :since
ORDER BY o.id DESC LIMIT 1
"""
_REMINDED_APPOINTMENT = f"""
SELECT a.id, a.starts_at, s.name AS service_name, c.name AS client_name, k.name AS clinic_name, k.timezone
FROM appointments a JOIN clients c ON c.id = a.client_id
LEFT JOIN services s ON s.id = a.service_id JOIN clinics k ON k.id = a.clinic_id
WHERE a.id = :id AND a.client_id = :client AND a.status IN {_BOOKED} AND a.starts_at > :now
FOR UPDATE OF a
"""
_CONFIRM_BY_REPLY = """
UPDATE appointments SET status = 'confirmed', patient_confirmed_at = coalesce(patient_confirmed_at, :now)
WHERE id = :id
"""


def load_automations(session: Session, clinic_id: int) -> list[AutomationSpec]:
    rows = session.execute(text(_ENABLED), {"c": clinic_id}).all()
    specs = []
    for kind, template, settings in rows:
        parsed = Template.parse(template)
        unknown = sorted(parsed.placeholders - AUTOMATION_PLACEHOLDERS)
        if unknown:
            log.error(
                "automation template has unknown placeholders; skipped",
                extra={"clinic_id": clinic_id, "kind": kind, "placeholders": unknown},
            )
            continue
        specs.append(AutomationSpec(kind, parsed, dict(settings or {})))
    return specs


def _query_for(spec: AutomationSpec, specs: Sequence[AutomationSpec]) -> tuple[str, dict[str, Any]] | None:
    kind = spec.kind
    if is_reminder(kind):
        return (
            _BASE + " AND " + _APPOINTMENT_RULES["reminder"],
            {"offset": spec.hours("offset_hours", 24), "until_before": reminder_until(spec, specs)},
        )
    if kind == "confirmation":
        return _BASE + " AND " + _APPOINTMENT_RULES[kind], {"valid_for": timedelta(hours=12)}
    if kind == "deposit_reminder":
        return (
            _BASE + " AND " + _APPOINTMENT_RULES[kind],
            {"offset": timedelta(minutes=float(spec.settings.get("delay_minutes", 30)))},
        )
    if kind == "aftercare":
        return (
            _BASE + " AND " + _APPOINTMENT_RULES[kind],
            {"offset": spec.hours("delay_hours", 24), "valid_for": timedelta(hours=48)},
        )
    if kind == "review_request":
        return (
            _BASE + " AND " + _APPOINTMENT_RULES[kind],
            {
                "offset": spec.hours("delay_hours", 48),
                "valid_for": timedelta(days=7),
                "since": timedelta(days=float(spec.settings.get("min_days_between", 90))),
            },
        )
    if kind == "no_show_followup":
        return (
            _BASE + " AND " + _APPOINTMENT_RULES[kind],
            {"offset": spec.hours("delay_hours", 2), "valid_for": timedelta(hours=48)},
        )
    if kind == "rebook_nudge":
        return _REBOOK, {
            "offset": timedelta(days=float(spec.settings.get("days_after_due", 0))),
            "valid_for": timedelta(days=30),
        }
    if kind == "win_back":
        return _WIN_BACK, {
            "offset": timedelta(days=float(spec.settings.get("inactive_days", 180))),
            "valid_for": timedelta(days=60),
        }
    return None


def follow_up_delay(spec: AutomationSpec) -> timedelta | None:
    """How long after a visit ends its follow-up text (aftercare, review request, no-show follow-up) falls due:
    the scan's own offset, for saying when it will go out (``worker/visits``)."""
    found = _query_for(spec, [spec]) if spec.kind in FOLLOW_UP_KINDS else None
    offset = found[1].get("offset") if found else None
    return offset if isinstance(offset, timedelta) else None


class PostgresAutomations:
    """``AutomationStore`` over the clinic's tenant-scoped transactions."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def sending_clinic(self, clinic_id: int) -> tuple[SendingClinic, list[AutomationSpec]] | None:
        with self.database.tenant_scope(clinic_id) as session:
            found = load_clinic(session, clinic_id)
            specs = load_automations(session, clinic_id)
        if found is None:
            return None
        clinic = SendingClinic(found.name, found.phone, found.timezone, dict(found.policies), found.routing.sms_number)
        return clinic, specs

    def create_due(
        self,
        clinic_id: int,
        spec: AutomationSpec,
        specs: Sequence[AutomationSpec],
        now: datetime,
        plan: Callable[[Sequence[DueVisit]], AutomationPlan],
    ) -> tuple[Created, int] | None:
        found = _query_for(spec, specs)
        if found is None:
            return None
        sql, params = found
        lock = (
            ""
            if spec.kind in ("rebook_nudge", "win_back")
            else " ORDER BY a.id LIMIT :limit FOR UPDATE OF a SKIP LOCKED"
        )
        with self.database.tenant_scope(clinic_id) as session:
            rows = (
                session.execute(
                    text(sql + lock),
                    {
                        **params,
                        "clinic_id": clinic_id,
                        "kind": spec.kind,
                        "names_the_time": names_the_time(spec.kind),
                        "now": now,
                        "limit": SCAN_LIMIT,
                        "week_ago": now - timedelta(days=7),
                    },
                )
                .mappings()
                .all()
            )
            planned = plan([DueVisit.of(row) for row in rows])
            created = Created()
            for text_ in planned.texts:
                # Recipients we must not text get their row recorded as suppressed, with the reason: once, never
                # retried.  A row whose dedupe key exists already is not inserted (a racing scanner's).
                inserted = insert_rows(session, clinic_id, [text_.row], suppressed_because=text_.suppressed_because)
                if not inserted:
                    continue
                if text_.suppressed_because:
                    created.suppressed += 1
                else:
                    created.outbox_ids += inserted
        return created, planned.waiting


def scan_clinic(database: Database, clinic_id: int, now: datetime) -> ScanResult:
    """Create (once) every automation message due now for one clinic (``rules.scan`` over Postgres)."""
    return scan(PostgresAutomations(database), clinic_id, now)


def withdraw_appointment_messages(session: Session, clinic_id: int, appointment_id: int) -> int:
    """Withdraw queued automation texts about an appointment that was cancelled or moved.

    Call it in the transaction that cancels/reschedules the appointment.  A
    reminder already claimed by a sender goes out (it was due before the
    cancellation); everything still queued does not — but the texts about a
    visit that happened (``FOLLOW_UP_KINDS``).  A moved visit's texts are due
    again for its new time (their dedupe key carries the start,
    ``rules.dedupe_key``): the next scan creates them.
    """
    return withdraw_automation_messages(session, clinic_id, appointment_id, keep_kinds=sorted(FOLLOW_UP_KINDS))


# ------------------------------------------------------------------ reminder replies
def handle_reminder_reply(session: Session, clinic_id: int, client_id: int, body: str, now: datetime) -> str | None:
    """A reply of C / YES to a recent confirmation or reminder confirms that appointment.

    Returns the short confirmation to send back (the caller sends it as the
    turn's reply and skips the model), or None when the message is not a
    confirmation of a reminded, still-upcoming appointment — then it goes to the
    normal agent flow (as "R" / "reschedule" always does).  Idempotent: a second
    "C" confirms nothing new and gets the same reply.
    """
    if reminder_reply_intent(body) != "confirm":
        return None
    reminded = session.execute(
        text(_LAST_REMINDED), {"c": clinic_id, "client": client_id, "since": now - timedelta(days=3)}
    ).scalar_one_or_none()
    if reminded is None:
        return None
    appointment = (
        session.execute(text(_REMINDED_APPOINTMENT), {"id": reminded, "client": client_id, "now": now})
        .mappings()
        .one_or_none()
    )
    if appointment is None:
        return None
    session.execute(text(_CONFIRM_BY_REPLY), {"id": appointment["id"], "now": now})
    log.info("appointment confirmed by reply", extra={"clinic_id": clinic_id, "appointment_id": appointment["id"]})
    return confirmation_reply(
        first_name(appointment["client_name"]),
        appointment["clinic_name"],
        appointment["service_name"],
        when_label(appointment["starts_at"], appointment["timezone"]),
    )


def confirm_by_reply(database: Database, clinic_id: int, client_id: int, body: str, now: datetime) -> str | None:
    """``handle_reminder_reply`` in a transaction of its own (the turn's ``ReminderReply`` port)."""
    with database.tenant_scope(clinic_id) as session:
        return handle_reminder_reply(session, clinic_id, client_id, body, now)
