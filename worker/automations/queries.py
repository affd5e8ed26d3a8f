"""Automations: the texts a clinic sends on its own — booking confirmation,
reminders 24 h and 2 h ahead, deposit reminder, aftercare, review request,
rebooking nudge, no-show follow-up, win-back.

How "once, at the right moment" holds across restarts and replicas:
- nothing is remembered in Redis or in delayed messages; every scan reads from
  Postgres what is due *now* (``now`` from the container's clock), within a
  validity window per kind, so a scan missed while nothing ran is covered by
  the next one and stale messages are never sent late;
- every message has a deterministic dedupe key (``auto:reminder_24h:appt:42``)
  and the outbox's unique ``(clinic_id, dedupe_key)`` turns a racing second
  scanner's insert into a no-op; only the scanner that inserted enqueues it;
- the appointment's status is read in the same transaction that inserts the
  outbox row, with the row locked, so a cancelled appointment gets no
  reminder; ``withdraw_appointment_messages`` withdraws queued ones when an
  appointment is cancelled afterwards;
- recipients we must not text (opted out, invalid number, marketing without
  opt-in, weekly cap) get a ``suppressed`` row with the reason: recorded once,
  never retried;
- a message that falls in quiet hours is simply not created yet: the scan that
  runs after the window opens creates it, while it is still valid;
- the sender decides again at the moment of sending (``worker/outbox``):
  a text that waited past its window (rate limits, retries, a provider outage)
  is deferred to the recipient's next allowed instant, and one whose recipient
  opted out meanwhile is suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database, sql_list
from domain.audience import RecipientFacts, SendPolicy, decide
from domain.outbox import DELIVERED, SENDING, SENT, UNKNOWN
from domain.templates import (
    AUTOMATION_PLACEHOLDERS,
    Template,
    confirmation_reply,
    first_name,
    reminder_reply_intent,
    when_label,
    with_footer,
)
from worker.outbox.planning import RECIPIENT_COLUMNS, SENDING_CLINIC, marketing_counts, planned_recipient
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows, withdraw_automation_messages

log = logging.getLogger(__name__)

AUTOMATION_PRIORITY = 5  # after replies (0), before campaigns (10)
SCAN_LIMIT = 500  # per kind per clinic per scan; the next scan continues
MARKETING_KINDS = frozenset({"review_request", "rebook_nudge", "win_back"})
REMINDER_KINDS = frozenset({"confirmation", "reminder_24h", "reminder_2h"})
# Texts about a visit that happened (or was missed): a later cancellation or move does not withdraw them.
FOLLOW_UP_KINDS = frozenset({"no_show_followup", "aftercare", "review_request"})


@dataclass(frozen=True)
class AutomationSpec:
    kind: str
    template: Template
    settings: dict[str, Any]

    @property
    def marketing(self) -> bool:
        category = self.settings.get("category")
        return category == "marketing" if category else self.kind in MARKETING_KINDS

    def hours(self, key: str, default: float) -> timedelta:
        return timedelta(hours=float(self.settings.get(key, default)))


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

_BASE = f"""
    SELECT {_APPOINTMENT_FACTS}
    WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.client_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                        AND x.dedupe_key = 'auto:' || CAST(:kind AS text) || ':appt:' || a.id)
"""

# A visit that happened here, not history brought in by an import (``medspa appointments import-visits``): the
# texts that follow a visit (aftercare, review request, no-show follow-up) are for those only, however recent the
# imported date.  The rebook nudge and win-back read the client's last visit, imported or not (the point of
# importing it), and are marketing: only a client with a marketing grant gets them.
_LIVE_VISIT = "a.imported_at IS NULL"

# Per kind: extra WHERE conditions on the appointment (binds :now, :start_after, :valid_for, :since).
_APPOINTMENT_RULES: dict[str, str] = {
    # Booked by staff, phone or web chat in the last half day; an SMS booking was confirmed in its own thread.
    "confirmation": """a.status IN ('booked', 'confirmed') AND a.starts_at > :now
        AND a.created_at > :now - :valid_for AND a.created_at <= :now
        AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.id = a.conversation_id AND v.channel = 'sms')""",
    # From `offset` before the start until the next (shorter) reminder takes over; only if booked before that.
    "reminder": """a.status IN ('booked', 'confirmed')
        AND a.starts_at - :offset <= :now AND :now < a.starts_at - :until_before
        AND a.created_at <= a.starts_at - :offset""",
    "deposit_reminder": """a.status = 'pending_deposit' AND a.hold_expires_at > :now + interval '2 minutes'
        AND a.created_at + :offset <= :now""",
    "aftercare": f"""a.status = 'completed' AND {_LIVE_VISIT}
        AND a.ends_at + :offset <= :now AND :now < a.ends_at + :offset + :valid_for""",
    "review_request": f"""a.status = 'completed' AND {_LIVE_VISIT} AND a.ends_at + :offset <= :now
        AND :now < a.ends_at + :offset + :valid_for
        AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.client_id = a.client_id
                          AND r.meta->>'automation' = 'review_request' AND r.created_at > :now - :since)""",
    "no_show_followup": f"""a.status = 'no_show' AND {_LIVE_VISIT} AND a.ends_at + :offset <= :now
        AND :now < a.ends_at + :offset + :valid_for""",
}

_FUTURE = """EXISTS (SELECT 1 FROM appointments f WHERE f.client_id = a.client_id AND f.kind = 'appointment'
                     AND f.status IN ('pending_deposit', 'booked', 'confirmed') AND f.starts_at > :now)"""

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
        WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.status = 'completed'
          AND a.starts_at + make_interval(days => s.rebook_interval_days) + :offset <= :now
          AND :now < a.starts_at + make_interval(days => s.rebook_interval_days) + :offset + :valid_for
          AND NOT {_FUTURE}
          AND NOT EXISTS (SELECT 1 FROM appointments later WHERE later.client_id = a.client_id
                            AND later.service_id = a.service_id AND later.status = 'completed'
                            AND later.starts_at > a.starts_at)
          AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                            AND x.dedupe_key = 'auto:' || CAST(:kind AS text) || ':appt:' || a.id)
        ORDER BY a.client_id, a.starts_at DESC) due
    ORDER BY appointment_id LIMIT :limit
"""

_WIN_BACK = f"""
    SELECT * FROM (
        SELECT DISTINCT ON (a.client_id) {_APPOINTMENT_FACTS}
        WHERE a.clinic_id = :clinic_id AND a.kind = 'appointment' AND a.status = 'completed'
          AND NOT {_FUTURE}
        ORDER BY a.client_id, a.starts_at DESC) last_visit
    WHERE starts_at + :offset <= :now AND :now < starts_at + :offset + :valid_for
      AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.clinic_id = :clinic_id
                        AND x.dedupe_key = 'auto:' || CAST(:kind AS text) || ':appt:' || appointment_id)
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
_REMINDED_APPOINTMENT = """
SELECT a.id, a.starts_at, s.name AS service_name, c.name AS client_name, k.name AS clinic_name, k.timezone
FROM appointments a JOIN clients c ON c.id = a.client_id
LEFT JOIN services s ON s.id = a.service_id JOIN clinics k ON k.id = a.clinic_id
WHERE a.id = :id AND a.client_id = :client AND a.status IN ('booked', 'confirmed') AND a.starts_at > :now
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


def _reminder_until(spec: AutomationSpec, specs: list[AutomationSpec]) -> timedelta:
    """A reminder stays valid until the next shorter reminder is due (or 30 minutes before the start)."""
    mine = spec.hours("offset_hours", 24)
    shorter = [s.hours("offset_hours", 2) for s in specs if s.kind.startswith("reminder_") and s.kind != spec.kind]
    shorter = [h for h in shorter if h < mine]
    return max(shorter) if shorter else timedelta(minutes=30)


def _query_for(spec: AutomationSpec, specs: list[AutomationSpec]) -> tuple[str, dict[str, Any]] | None:
    kind = spec.kind
    if kind.startswith("reminder_"):
        return (
            _BASE + " AND " + _APPOINTMENT_RULES["reminder"],
            {"offset": spec.hours("offset_hours", 24), "until_before": _reminder_until(spec, specs)},
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


@dataclass
class ScanResult:
    outbox_ids: list[int]  # committed rows to send now
    suppressed: int = 0
    waiting: int = 0  # due but in quiet hours: created by a later scan


def scan_clinic(database: Database, clinic_id: int, now: datetime) -> ScanResult:
    """Create (once) every automation message due now for one clinic; one transaction per kind."""
    result = ScanResult([])
    with database.tenant_scope(clinic_id) as session:
        clinic = session.execute(text(SENDING_CLINIC), {"id": clinic_id}).mappings().one()
        specs = load_automations(session, clinic_id)
    policies = dict(clinic["policies"] or {})
    for spec in specs:
        found = _query_for(spec, specs)
        if found is None:
            continue
        sql, params = found
        with database.tenant_scope(clinic_id) as session:
            lock = (
                ""
                if spec.kind in ("rebook_nudge", "win_back")
                else " ORDER BY a.id LIMIT :limit FOR UPDATE OF a SKIP LOCKED"
            )
            rows = (
                session.execute(
                    text(sql + lock),
                    {
                        **params,
                        "clinic_id": clinic_id,
                        "kind": spec.kind,
                        "now": now,
                        "limit": SCAN_LIMIT,
                        "week_ago": now - timedelta(days=7),
                    },
                )
                .mappings()
                .all()
            )
            due = [DueVisit.of(row) for row in rows]
            ids, suppressed, waiting = _emit(session, clinic_id, clinic, policies, spec, due, now)
        result.outbox_ids += ids
        result.suppressed += suppressed
        result.waiting += waiting
    return result


@dataclass(frozen=True)
class DueVisit:
    """One appointment an automation text is due for, with its recipient (``_APPOINTMENT_FACTS``)."""

    appointment_id: int
    recipient: RecipientFacts
    name: str | None
    starts_at: datetime
    service_name: str | None
    service_category: str | None
    provider_name: str | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> DueVisit:
        return cls(
            appointment_id=int(row["appointment_id"]),
            recipient=planned_recipient(row),
            name=row["name"],
            starts_at=row["starts_at"],
            service_name=row["service_name"],
            service_category=row["service_category"],
            provider_name=row["provider_name"],
        )


def _emit(
    session: Session,
    clinic_id: int,
    clinic: Any,
    policies: dict[str, Any],
    spec: AutomationSpec,
    due: Sequence[DueVisit],
    now: datetime,
) -> tuple[list[int], int, int]:
    policy = (SendPolicy.marketing_for if spec.marketing else SendPolicy.transactional_for)(
        clinic["timezone"], policies
    )
    tips = spec.settings.get("tips") or {}
    ids: list[int] = []
    suppressed = waiting = 0
    for visit in due:
        facts = visit.recipient
        decision = decide(facts, policy, now)
        if decision.send and decision.deferred:
            waiting += 1
            continue
        values = {
            "first_name": first_name(visit.name),
            "clinic_name": clinic["name"],
            "clinic_phone": clinic["phone"],
            "service_name": visit.service_name,
            "last_service": visit.service_name,
            "provider_name": visit.provider_name,
            "when": when_label(visit.starts_at, clinic["timezone"]),
            "review_url": str(spec.settings.get("review_url") or policies.get("review_url") or ""),
            "aftercare_tip": tips.get(visit.service_category or "", "") if isinstance(tips, dict) else "",
        }
        body = spec.template.render(values)
        if decision.footer:
            body = with_footer(body, policy.footer)
        row = OutboxRow(
            channel="sms",
            kind="automation",
            to_address=facts.phone or "",
            from_address=clinic["sms"] or "",
            body=body,
            client_id=facts.client_id,
            conversation_id=None,
            priority=AUTOMATION_PRIORITY,
            meta={"automation": spec.kind, "appointment_id": visit.appointment_id, "marketing": spec.marketing},
            dedupe_key=f"auto:{spec.kind}:appt:{visit.appointment_id}",
        )
        # Recipients we must not text get their row recorded as suppressed, with the reason: once, never retried.
        why = "" if decision.send else f"automation not sent: {decision.reason}"
        inserted = insert_rows(session, clinic_id, [row], suppressed_because=why)
        if not inserted:
            continue
        if decision.send:
            ids += inserted
        else:
            suppressed += 1
    if ids or suppressed:
        log.info(
            "automation messages created",
            extra={"clinic_id": clinic_id, "automation": spec.kind, "queued": len(ids), "suppressed": suppressed},
        )
    return ids, suppressed, waiting


def withdraw_appointment_messages(session: Session, clinic_id: int, appointment_id: int) -> int:
    """Withdraw queued automation texts about an appointment that was cancelled or moved.

    Call it in the transaction that cancels/reschedules the appointment.  A
    reminder already claimed by a sender goes out (it was due before the
    cancellation); everything still queued does not — but the texts about a
    visit that happened (``FOLLOW_UP_KINDS``).
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
