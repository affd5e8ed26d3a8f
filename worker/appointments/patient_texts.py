"""Texting a patient about a change staff made for them — a booking, a move, a cancellation — from the staff
commands (``medspa appointments book --text|move|cancel``) and the console's calendar (``text_patient``).

Why these rules:
- One text per change: the outbox row carries a dedupe key per intent (``staff:book:{id}``,
  ``staff:move:{id}:{start}:{provider}``, ``staff:cancel:{id}``), so a repeat, from either place, queues nothing.
- It is queued in the change's own transaction (the service's ``within``) and sent only after that committed:
  the caller enqueues ``send_outbox`` for the returned ids (the outbox sweeper covers a lost enqueue).
- The send decision is the one every conversation text makes (``worker.outbox.decisions``, i.e.
  ``domain.audience.decide``): an opted-out patient or a number that cannot receive texts gets nothing, and
  staff are told to call instead.  The sender decides again at the moment of sending.
- The text is also written to the patient's conversation (linked to its outbox row): the agent sees what staff
  told them if they reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
from sqlalchemy.orm import Session

from domain import appointments as rules
from domain.clinic import Clinic
from domain.prompt import local_label
from domain.templates import first_name
from worker.appointments.rows import AppointmentRow, ClientRow
from worker.appointments.service import Booking, Cancellation, Move
from worker.outbox.decisions import conversation_text_decision
from worker.outbox.rows import OutboxRow
from worker.outbox.writes import insert_rows, write_history_message

QUEUED = "queued"
ALREADY_TEXTED = "already_texted"
_SUMMARY = {
    QUEUED: "patient texted (queued)",
    ALREADY_TEXTED: "patient already texted about this change",
    "no_phone": "patient not texted: no phone number on file",
    "opted_out": "patient not texted: they opted out of texts (call them)",
    "invalid_number": "patient not texted: their number cannot receive texts (call them)",
}


@dataclass(frozen=True)
class Recipient:
    """The patient as the send decision reads them, and their SMS conversation (None: no history to write)."""

    client_id: int | None
    phone: str | None
    consent_state: str | None
    sms_status: str | None
    conversation_id: int | None

    @classmethod
    def of_appointment(cls, appt: AppointmentRow) -> Recipient:
        return cls(appt.client_id, appt.phone_e164, appt.consent_state, appt.sms_status, appt.conversation_id)

    @classmethod
    def of_client(cls, client: ClientRow) -> Recipient:
        return cls(client.id, client.phone_e164, client.consent_state, client.sms_status, client.conversation_id)


@dataclass(frozen=True)
class PatientText:
    """What became of the text: ``queued`` (``outbox_ids`` to send after the commit), ``already_texted`` (this
    change's text exists), or why it was not sent (``no_phone``, ``opted_out``, ``invalid_number``, …)."""

    outcome: str
    outbox_ids: tuple[int, ...] = ()

    @property
    def summary(self) -> str:
        """One line for the staff member (no patient details)."""
        return _SUMMARY.get(self.outcome, f"patient not texted: {self.outcome}")


def text_patient(
    session: Session, clinic: Clinic, to: Recipient, appointment_id: int, body: str, dedupe_key: str, *, by: str
) -> PatientText:
    """Queue one SMS to the patient (once per ``dedupe_key``) in the caller's transaction and write it to their
    conversation.  ``by`` says where it came from (``staff-cli``, ``staff-console``), kept on the row."""
    decision = conversation_text_decision(
        to.phone, to.consent_state or "unknown", to.sms_status or "ok", datetime.now(UTC)
    )
    if not decision.send or not to.phone:
        return PatientText(decision.reason or "no_phone")
    row = OutboxRow(
        channel="sms",
        kind="staff",
        to_address=to.phone,
        from_address="",
        body=body,
        client_id=to.client_id,
        conversation_id=to.conversation_id,
        priority=0,
        dedupe_key=dedupe_key,
        meta={"appointment_id": appointment_id, "by": by},
    )
    ids = insert_rows(session, clinic.id, [row])
    if not ids:
        return PatientText(ALREADY_TEXTED)
    if to.conversation_id:
        write_history_message(
            session,
            clinic.id,
            to.conversation_id,
            body,
            role="staff",
            channel="sms",
            meta={"outbox_id": ids[0]},
            outbox_id=ids[0],
        )
    return PatientText(QUEUED, tuple(ids))


# ---------------------------------------------------------------------------------------------- the texts
def national(phone: str) -> str:
    """The clinic's number as a patient dials it ("(415) 555-0100"); as stored when unreadable."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return phone


def _when(clinic: Clinic, moment: datetime) -> str:
    return local_label(moment, str(clinic.tz))


def _hello(name: str | None) -> str:
    return f"Hi {first_name(name) or 'there'}"


def booked_body(clinic: Clinic, client: ClientRow, service_name: str, booking: Booking) -> str:
    hold = booking.hold_expires_at
    deposit = (
        f" A {rules.money(booking.deposit_cents)} deposit holds this time until {_when(clinic, hold)}; "
        "reply here and we'll send you the payment link."
        if booking.deposit_cents and hold
        else ""
    )
    return (
        f"{_hello(client.name)}, you're booked: {service_name} with {booking.provider.name} at "
        f"{clinic.name} on {_when(clinic, booking.timing.starts_at)}.{deposit} Reply here or call "
        f"{national(clinic.phone)} with any questions."
    )


def moved_body(clinic: Clinic, moved: Move) -> str:
    appt = moved.appointment
    return (
        f"{_hello(appt.client_name)}, as requested your {appt.service_name or 'appointment'} at "
        f"{clinic.name} has moved to {_when(clinic, moved.timing.starts_at)} with {moved.provider_name}. Reply "
        f"here or call {national(clinic.phone)} with any questions."
    )


def cancelled_body(clinic: Clinic, outcome: Cancellation) -> str:
    appt = outcome.appointment
    paid = outcome.deposit.amount_cents if outcome.deposit else 0
    sentence = rules.deposit_sentence(clinic.cancellation, outcome.deposit_action, paid, late=outcome.terms.late)
    return (
        f"{_hello(appt.client_name)}, as requested your {appt.service_name or 'appointment'} at "
        f"{clinic.name} on {_when(clinic, appt.starts_at)} is cancelled. {sentence + ' ' if sentence else ''}"
        f"Reply here or call {national(clinic.phone)} to rebook."
    )


# ---------------------------------------------------------------------------------------------- per change
def text_booked(
    session: Session, clinic: Clinic, client: ClientRow, service_name: str, booking: Booking, *, by: str
) -> PatientText:
    """The confirmation of a booking staff made (call it from ``AppointmentService.book``'s ``within``)."""
    body = booked_body(clinic, client, service_name, booking)
    key = f"staff:book:{booking.appointment_id}"
    return text_patient(session, clinic, Recipient.of_client(client), booking.appointment_id, body, key, by=by)


def text_moved(session: Session, clinic: Clinic, moved: Move, *, by: str) -> PatientText | None:
    """The new time of a visit staff moved (``AppointmentService.move``'s ``within``); None for blocked time."""
    appt = moved.appointment
    if appt.kind != rules.APPOINTMENT:
        return None
    key = f"staff:move:{appt.id}:{moved.timing.starts_at.astimezone(UTC):%Y%m%dT%H%M}:{moved.provider_id}"
    return text_patient(session, clinic, Recipient.of_appointment(appt), appt.id, moved_body(clinic, moved), key, by=by)


def text_cancelled(session: Session, clinic: Clinic, outcome: Cancellation, *, by: str) -> PatientText | None:
    """The cancellation and what happens to a paid deposit (``AppointmentService.cancel``'s ``within``); None
    for blocked time given back."""
    appt = outcome.appointment
    if appt.kind != rules.APPOINTMENT:
        return None
    body = cancelled_body(clinic, outcome)
    return text_patient(
        session, clinic, Recipient.of_appointment(appt), appt.id, body, f"staff:cancel:{appt.id}", by=by
    )
