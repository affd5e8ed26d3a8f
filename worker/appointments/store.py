"""Named queries of the appointment service (``:name`` parameters throughout, but for the hot path's raw psycopg
reads marked below; every statement runs in the caller's tenant scope, row-level security keeps it inside the
clinic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import sql_list
from domain import deposits
from domain.appointments import APPOINTMENT, BLOCK, BOOKED, CANCELLED, LIVE_STATUSES, OCCUPYING_STATUSES
from domain.conversation import AppointmentView
from domain.screening import parse_contraindications
from worker.appointments.rows import AppointmentRow, ClientRow, PaidDeposit, ProviderRow, ServiceRow

_LIVE = sql_list(LIVE_STATUSES)
_OCCUPYING = sql_list(OCCUPYING_STATUSES)  # the provider is busy (what the exclusion constraint covers)

# "The patient has an upcoming visit", the one definition: the agent's list below, the console's and the CLI's next
# visit and upcoming list, the automations that must not ask a patient who has booked to rebook (rebook nudge,
# win-back) and the campaign segment "has a future appointment" all render it.  A visit is upcoming while it holds
# the provider's time (``OCCUPYING_STATUSES``: a checked-in patient too) and is not over: until its end, and for
# at least an hour after its start (a late patient is still expected).  With a copy per reader, a visit that had
# started ten minutes earlier was upcoming for the agent and "no future appointment" for the rebook nudge.
UPCOMING_GRACE = "interval '1 hour'"


def upcoming_visit(appointment: str, now: str) -> str:
    """SQL condition: the ``appointments`` row aliased ``appointment`` is an upcoming visit at ``now`` (an SQL
    expression in the caller's own dialect: ``:now``, ``now()``, ``%(now)s``...)."""
    a = appointment
    return (
        f"{a}.kind = '{APPOINTMENT}' AND {a}.status IN {_OCCUPYING}"
        f" AND greatest({a}.ends_at, {a}.starts_at + {UPCOMING_GRACE}) > {now}"
    )


def has_upcoming_visit(client: str, now: str) -> str:
    """SQL condition: the client whose id is the SQL expression ``client`` (``c.id``, ``a.client_id``) has an
    upcoming visit at ``now`` (see :func:`upcoming_visit`)."""
    return (
        f"EXISTS (SELECT 1 FROM appointments upcoming WHERE upcoming.client_id = {client}"
        f" AND {upcoming_visit('upcoming', now)})"
    )


# The patient's upcoming appointments, the one list of them a turn works from: the prompt shows it and
# ``get_my_appointments`` answers from it (worker/tools/my_appointments.py keeps the ones still changeable).
# Read with the turn's snapshot, in the round trip that takes the lease (worker/conversations/snapshot.py), and
# again by the tool only after another tool may have changed it.  Keyed by the conversation (its patient): the
# snapshot knows no client id before this round trip.  Upcoming as :func:`upcoming_visit` says.  ``%(now)s``: the
# turn's clock (NULL: the server's).  Raw psycopg parameters, for the hot path's connection.
UPCOMING_OF_CONVERSATION = f"""
SELECT a.id, coalesce(s.name, 'Appointment'), p.name, a.starts_at, a.ends_at, a.status, a.deposit_cents
FROM appointments a LEFT JOIN services s ON s.id = a.service_id
JOIN providers p ON p.id = a.provider_id
WHERE a.client_id = (SELECT client_id FROM conversations WHERE id = %(id)s)
  AND {upcoming_visit("a", "coalesce(%(now)s::timestamptz, now())")}
ORDER BY a.starts_at LIMIT 10
"""


def upcoming_views(rows: list[Any]) -> list[AppointmentView]:
    """``UPCOMING_OF_CONVERSATION``'s rows as the domain's view."""
    return [AppointmentView(int(r[0]), r[1], r[2] or "", r[3], r[4], r[5], int(r[6] or 0)) for r in rows]


SERVICES = text(
    """SELECT id, slug, name, category, description, duration_min, buffer_min, price_cents, price_note,
              deposit_cents, prep_instructions, synonyms, contraindications
       FROM services WHERE clinic_id = :c AND active ORDER BY id"""
)
PROVIDERS = text(
    """SELECT p.id, p.slug, p.name, p.title, p.calendar_id, p.working_hours,
              coalesce(array_agg(ps.service_id) FILTER (WHERE ps.service_id IS NOT NULL), '{}') AS sids
       FROM providers p LEFT JOIN provider_services ps ON ps.provider_id = p.id
       WHERE p.clinic_id = :c AND p.active GROUP BY p.id ORDER BY p.id"""
)
BUSY = text(
    f"""SELECT id, provider_id, starts_at, blocked_until FROM appointments
        WHERE clinic_id = :c AND status IN {_OCCUPYING} AND starts_at < :end AND blocked_until > :start"""
)
# What the patient said lately: in this conversation (the agent), or in any of theirs (staff booking for them).
CONVERSATION_TEXTS = text(
    """SELECT body FROM messages
       WHERE conversation_id = :conv AND clinic_id = :c AND direction = 'inbound'
         AND created_at > now() - interval '60 days'
       ORDER BY id DESC LIMIT 40"""
)
CLIENT_TEXTS = text(
    """SELECT m.body FROM messages m JOIN conversations v ON v.id = m.conversation_id
       WHERE v.client_id = :client AND m.clinic_id = :c AND m.direction = 'inbound'
         AND m.created_at > now() - interval '60 days'
       ORDER BY m.id DESC LIMIT 40"""
)
_APPOINTMENT_COLUMNS = """
    a.id, a.kind, a.status, a.starts_at, a.ends_at, a.blocked_until, a.provider_id, a.service_id, a.client_id,
    a.deposit_cents, a.hold_expires_at, s.name AS service_name, p.slug AS provider_slug, p.name AS provider_name,
    c.name AS client_name, c.phone_e164, c.consent_state, c.sms_status,
    (SELECT v.id FROM conversations v WHERE v.client_id = a.client_id AND v.channel = 'sms' ORDER BY v.id LIMIT 1)
        AS conversation_id
    FROM appointments a JOIN providers p ON p.id = a.provider_id
    LEFT JOIN services s ON s.id = a.service_id LEFT JOIN clients c ON c.id = a.client_id"""
# The patient's own (another patient's appointment looks exactly like a missing one), locked as staff's is: the
# patient reads it to change it (cancel, move, pay), and a deposit landing between that read and the change must
# wait for it — else a cancel quotes "no deposit" terms while the payment commits, and the deposit goes unsettled.
PATIENT_APPOINTMENT = text(
    f"""SELECT {_APPOINTMENT_COLUMNS}
        WHERE a.id = :id AND a.clinic_id = :c AND a.client_id = :client AND a.kind = '{APPOINTMENT}'
        FOR UPDATE OF a"""
)
# Staff act on any appointment or block of the clinic; the row is locked for the change.
APPOINTMENT_FOR_UPDATE = text(f"SELECT {_APPOINTMENT_COLUMNS} WHERE a.id = :id AND a.clinic_id = :c FOR UPDATE OF a")
INSERT_APPOINTMENT = text(
    """INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, conversation_id, starts_at, ends_at,
           blocked_until, status, source_key, deposit_cents, hold_expires_at, patient_confirmed_at, notes)
       VALUES (:c, :client, :p, :s, :conv, :start, :end, :blocked, :status, :key, :deposit, :hold, :confirmed,
           :notes)
       ON CONFLICT (clinic_id, source_key) DO NOTHING RETURNING id"""
)
# A provider's blocked time: a row of kind 'block' that holds its slot like a booking (no buffer, no calendar).
INSERT_BLOCK = text(
    f"""INSERT INTO appointments (clinic_id, kind, provider_id, starts_at, ends_at, blocked_until, status,
                                  source_key, calendar_sync, notes)
        VALUES (:c, '{BLOCK}', :p, :s, :e, :e, '{BOOKED}', :key, 'none', :reason)
        ON CONFLICT (clinic_id, source_key) DO NOTHING RETURNING id"""
)
APPOINTMENT_BY_SOURCE_KEY = text(
    """SELECT id, status, provider_id, starts_at, ends_at, blocked_until, deposit_cents, hold_expires_at
       FROM appointments WHERE clinic_id = :c AND source_key = :k"""
)
CANCEL = text(
    f"""UPDATE appointments SET status = '{CANCELLED}', cancelled_at = :now, cancel_reason = :reason,
               calendar_sync = 'pending', hold_expires_at = NULL, updated_at = now(),
               notes = CASE WHEN :note = '' THEN notes WHEN notes = '' THEN :note ELSE notes || E'\\n' || :note END
        WHERE id = :id AND status IN {_LIVE} RETURNING id"""
)
MOVE = text(
    f"""UPDATE appointments SET starts_at = :start, ends_at = :end, blocked_until = :blocked, provider_id = :p,
               calendar_sync = 'pending', updated_at = now(),
               patient_confirmed_at = coalesce(CAST(:confirmed AS timestamptz), patient_confirmed_at)
        WHERE id = :id AND status IN {_LIVE} RETURNING id"""
)
SETTLEABLE_DEPOSIT = text(
    f"""SELECT id, status, amount_cents, refunded_cents, payment_intent_id FROM payments
        WHERE appointment_id = :id AND status IN {sql_list(deposits.SETTLEABLE_STATUSES)} ORDER BY id LIMIT 1"""
)
OVERLAP = text(
    f"""SELECT id, kind, starts_at, blocked_until FROM appointments
        WHERE provider_id = :p AND status IN {_OCCUPYING} AND id <> COALESCE(CAST(:ignore AS bigint), 0)
          AND tstzrange(starts_at, blocked_until, '[)') && tstzrange(:s, :e, '[)')
        ORDER BY starts_at LIMIT 1"""
)
CLIENT = text(
    """SELECT c.id, c.name, c.phone_e164, c.consent_state, c.sms_status,
              (SELECT v.id FROM conversations v WHERE v.client_id = c.id AND v.channel = 'sms' ORDER BY v.id LIMIT 1)
                  AS conversation_id
       FROM clients c WHERE c.clinic_id = :c AND (c.id = :id OR c.phone_e164 = :phone)
       ORDER BY (c.id = :id) DESC LIMIT 1"""
)


def services(session: Session, clinic_id: int) -> list[ServiceRow]:
    return [
        ServiceRow(
            r.id,
            r.slug,
            r.name,
            r.category,
            r.description,
            r.duration_min,
            r.buffer_min,
            r.price_cents,
            r.price_note,
            r.deposit_cents,
            r.prep_instructions,
            tuple(r.synonyms or ()),
            parse_contraindications(r.contraindications),
        )
        for r in session.execute(SERVICES, {"c": clinic_id})
    ]


def providers(session: Session, clinic_id: int) -> list[ProviderRow]:
    return [
        ProviderRow(r.id, r.slug, r.name, r.title, r.calendar_id, r.working_hours or {}, frozenset(r.sids or ()))
        for r in session.execute(PROVIDERS, {"c": clinic_id})
    ]


def busy_rows(session: Session, clinic_id: int, start: datetime, end: datetime) -> list[Any]:
    return list(session.execute(BUSY, {"c": clinic_id, "start": start, "end": end}))


def conversation_texts(session: Session, clinic_id: int, conversation_id: int) -> list[str]:
    """The patient's recent messages in one conversation, oldest first."""
    rows = session.execute(CONVERSATION_TEXTS, {"conv": conversation_id, "c": clinic_id}).scalars().all()
    return [str(body) for body in reversed(rows)]


def client_texts(session: Session, clinic_id: int, client_id: int) -> list[str]:
    """The patient's recent messages in any of their conversations, oldest first."""
    rows = session.execute(CLIENT_TEXTS, {"client": client_id, "c": clinic_id}).scalars().all()
    return [str(body) for body in reversed(rows)]


def _appointment(row: Any) -> AppointmentRow:
    return AppointmentRow(**dict(row))


def patient_appointment(session: Session, clinic_id: int, client_id: int, appointment_id: int) -> AppointmentRow | None:
    row = (
        session.execute(PATIENT_APPOINTMENT, {"id": appointment_id, "c": clinic_id, "client": client_id})
        .mappings()
        .one_or_none()
    )
    return _appointment(row) if row is not None else None


def appointment_for_update(session: Session, clinic_id: int, appointment_id: int) -> AppointmentRow | None:
    row = session.execute(APPOINTMENT_FOR_UPDATE, {"id": appointment_id, "c": clinic_id}).mappings().one_or_none()
    return _appointment(row) if row is not None else None


def settleable_deposit(session: Session, appointment_id: int) -> PaidDeposit | None:
    row = session.execute(SETTLEABLE_DEPOSIT, {"id": appointment_id}).one_or_none()
    if row is None:
        return None
    # What is still held is what a cancellation refunds or keeps (a dashboard refund may have taken part of it).
    held = deposits.held_cents(int(row.amount_cents or 0), int(row.refunded_cents or 0))
    return PaidDeposit(int(row.id), str(row.status), held, row.payment_intent_id)


def client(session: Session, clinic_id: int, *, client_id: int | None, phone: str | None) -> ClientRow | None:
    row = session.execute(CLIENT, {"c": clinic_id, "id": client_id or 0, "phone": phone or ""}).one_or_none()
    if row is None:
        return None
    return ClientRow(
        int(row.id),
        row.name,
        row.phone_e164,
        row.consent_state or "unknown",
        row.sms_status or "ok",
        row.conversation_id,
    )


def overlap(session: Session, provider_id: int, start: datetime, end: datetime, ignore: int | None) -> Any:
    """The first live appointment or block of ``provider_id`` overlapping [start, end), for an error line."""
    return session.execute(OVERLAP, {"p": provider_id, "ignore": ignore, "s": start, "e": end}).one_or_none()
