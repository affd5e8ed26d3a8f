"""Changing the calendar: book, move, cancel and block time through the one appointment service
(``worker/appointments``), and the day of a visit — check in, complete, no-show, late cancel — through
``worker/visits/transitions``: the same code, rules and refusals as ``medspa appointments …``.

- Who: ``schedule:write`` (front desk, managers, owners); a provider changes only their own appointments and time,
  and books only their own patients (a booking is what makes a patient theirs: ``console.queries.clients``).
  Another clinic's appointment is invisible (row-level security): 404, nothing changed.
- Screening, availability, the deposit hold and the clinic's cancellation policy (refund or keep a paid deposit)
  are the service's; an overlap is refused by the exclusion constraint (409, naming what it overlaps).
- Every change writes its audit row in the same transaction as the change (ids and choices, never PHI); the
  follow-up actors (calendar sync, deposit refund or keep, a fee's charge) are enqueued by name after the commit.
- ``text_patient``: the patient is told about a booking, move or cancellation as ``medspa appointments …`` tells
  them (``worker/appointments/patient_texts.py``: once per change, in the change's transaction, consent decides;
  the same defaults — a booking only when asked, a move or cancellation unless asked not to); its send is
  handed to the workers after the commit (``console/jobs.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from console import audit, jobs
from console.api.calendar_models import (
    BY,
    MAX_BLOCK,
    AppointmentOut,
    BlockIn,
    BookIn,
    CancelIn,
    CancellationOut,
    MoveIn,
)
from console.api.framework import ApiCall, api
from console.problems import Problem, forbidden, not_found
from console.queries import clients as client_queries
from console.queries import schedule as queries
from db.clinics import load_clinic
from domain import appointments as rules
from domain.clinic import Clinic
from domain.staff_access import PatientReach, Permission
from medspa.broker import message_for
from worker.appointments import patient_texts, store
from worker.appointments.patient_texts import PatientText
from worker.appointments.rows import AppointmentError, AppointmentRow, ProviderRow
from worker.appointments.service import (
    AppointmentService,
    Booking,
    BookingRequest,
    Cancellation,
    Move,
    SlotTaken,
)
from worker.visits.transitions import FOLLOW_UP_ACTORS


# ---------------------------------------------------------------------------------------------- shared
def own_provider(call: ApiCall) -> int | None:
    """The provider a provider-role user is bound to (None: the whole clinic).  A provider account without a
    provider row changes nothing."""
    access = call.clinic
    if access.own_provider_id is None and access.reach != PatientReach.CLINIC:
        raise forbidden("Your account is not linked to a provider's schedule.")
    return access.own_provider_id


def reachable(call: ApiCall, appointment_id: int) -> dict[str, Any]:
    """The appointment if this caller may change it: 404 outside the clinic, 403 for another provider's."""
    row = queries.appointment(call.session, appointment_id)
    if row is None:
        raise not_found("appointment")
    own = own_provider(call)
    if own is not None and row["provider_id"] != own:
        raise forbidden("You can change only your own appointments.")
    return row


def answer(call: ApiCall, appointment_id: int, **extra: Any) -> dict[str, Any]:
    """The appointment as it is now (the service's transaction committed; read committed sees it)."""
    row = queries.appointment(call.session, appointment_id)
    assert row is not None, "just written"
    return {**row, **extra}


def enqueue_follow_ups(call: ApiCall, appointment_id: int, kinds: Iterable[str]) -> list[str]:
    """Hand ``kinds`` (``FOLLOW_UP_ACTORS`` keys) to the workers once the request committed; their names."""
    clinic_id = call.clinic.clinic_id
    names = [FOLLOW_UP_ACTORS[kind] for kind in kinds]
    if names:
        messages = [message_for(name, queue, clinic_id, appointment_id) for name, queue in names]
        outside = call.runtime.outside
        call.after_commit.append(lambda: outside.enqueue(messages))
    return [name for name, _ in names]


def send_patient_text(call: ApiCall, sent: PatientText | None) -> list[str]:
    """Hand a text the change queued to the workers once the request committed; the actor's name (or nothing)."""
    if sent is None or not sent.outbox_ids:
        return []
    clinic_id, outbox_ids, outside = call.clinic.clinic_id, sent.outbox_ids, call.runtime.outside
    call.after_commit.append(lambda: jobs.send_texts(outside, clinic_id, outbox_ids))
    return ["send_outbox"]


def texted(sent: PatientText | None) -> dict[str, Any]:
    """The answer's fields about the patient's text: what became of it (a note) and its outbox ids."""
    if sent is None:
        return {"notes": [], "outbox_ids": []}
    return {"notes": [sent.summary], "outbox_ids": list(sent.outbox_ids)}


def invalid(field: str, message: str) -> Problem:
    return Problem(
        400, "Invalid input", f"{field}: {message}", kind="validation", errors=[{"field": field, "message": message}]
    )


def the_clinic(call: ApiCall) -> Clinic:
    clinic = load_clinic(call.session, call.clinic.clinic_id)
    if clinic is None:
        raise not_found("clinic")
    return clinic


def appointment_service(call: ApiCall, clinic: Clinic, *, with_calendar: bool = False) -> AppointmentService:
    settings = call.runtime.settings
    calendar = None
    if with_calendar:  # availability asks the providers' calendars (Google when configured)
        from worker.container import build_calendar

        calendar = build_calendar(settings)
    return AppointmentService(
        call.runtime.database, clinic, now=call.now, calendar=calendar, hold_minutes=settings.deposit_hold_minutes
    )


def future(call: ApiCall, start: datetime, field: str = "starts_at") -> None:
    if start <= call.now:
        raise invalid(field, "is in the past; pick a future time")


def active_provider(session: Session, clinic_id: int, provider_id: int, field: str = "provider_id") -> ProviderRow:
    provider = next((p for p in store.providers(session, clinic_id) if p.id == provider_id), None)
    if provider is None:
        raise invalid(field, "no active provider with this id at this clinic")
    return provider


def slot_taken(call: ApiCall, clinic: Clinic, exc: SlotTaken, ignore: int | None) -> Problem:
    """409 naming what the time overlaps ("appointment 12 on 2031-03-04 14:00-15:15")."""
    row = store.overlap(call.session, exc.provider_id, exc.start, exc.end, ignore)
    clash = "another appointment or block"
    if row is not None:
        clash = (
            f"{'blocked time' if row.kind == rules.BLOCK else 'appointment'} {row.id} on "
            f"{row.starts_at.astimezone(clinic.tz):%Y-%m-%d %H:%M}-{row.blocked_until.astimezone(clinic.tz):%H:%M}"
        )
    return Problem(409, "Time not available", f"That time overlaps {clash}; nothing changed.", kind="conflict")


def refused(exc: AppointmentError) -> Problem:
    """The service's refusal (written for the agent too) as problem details for staff."""
    screening = exc.extra.get("screening")
    if screening:
        conditions = ", ".join(screening.get("conditions") or ()) or "a contraindication"
        suggest = ", ".join(screening.get("suggest") or ())
        return Problem(
            409,
            "Not offered to this patient now",
            f"Screening: {screening.get('service')} is not offered to this patient now ({conditions}); nothing "
            f"booked.{' Alternatives: ' + suggest + '.' if suggest else ''}",
            kind="screening",
        )
    if "qualified_providers" in exc.extra:
        qualified = ", ".join(exc.extra["qualified_providers"]) or "none you can book"  # a provider books only self
        return invalid("provider_id", f"{exc} (qualified: {qualified})")
    alternatives = exc.extra.get("alternatives")
    if alternatives is not None:
        options = "; ".join(f"{a['start'].replace('T', ' ')} with {a['provider']}" for a in alternatives)
        return Problem(
            409,
            "Time not available",
            f"That time is not available; nothing booked.{' Open nearby: ' + options + '.' if options else ''}",
            kind="conflict",
        )
    return Problem(409, "Cannot change this appointment", f"{str(exc)[:1].upper()}{str(exc)[1:]}.", kind="conflict")


def locked(call: ApiCall, clinic: Clinic, appointment_id: int) -> Any:
    """The service's lookup: the row locked in its transaction, re-checked (still ours, still live)."""
    own = own_provider(call)

    def lookup(session: Session) -> AppointmentRow:
        appt = store.appointment_for_update(session, clinic.id, appointment_id)
        if appt is None:
            raise not_found("appointment")
        if own is not None and appt.provider_id != own:
            raise forbidden("You can change only your own appointments.")
        if not rules.staff_may_change(appt.status):
            raise Problem(
                409, "Cannot change this appointment", f"Appointment {appt.id} is {appt.status}.", kind="conflict"
            )
        return appt

    return lookup


# ---------------------------------------------------------------------------------------------- book
@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments",
    summary="Book a patient: availability, screening and the deposit hold as the agent books",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=BookIn,
    response=AppointmentOut,
    status_code=201,
)
def book_appointment(call: ApiCall) -> AppointmentOut:
    """A service that takes a deposit is booked ``pending_deposit`` with a hold.  The same patient, service, time and
    provider again answers that booking (``changed: false``).  409 when the time is taken (open times nearby: a
    provider's own) or screening refuses the service; 403 when a provider books someone not their patient."""
    body: BookIn = call.body
    own = own_provider(call)
    if own is not None and body.provider_id not in (None, own):
        raise forbidden("You can book only your own schedule.")
    # Before screening or availability: their refusals name the patient's stated condition and open times, not a
    # provider's to learn of another's patient (booking them would make the patient theirs).  Exists or not: 403.
    if own is not None and not client_queries.lookup(call.session, body.client_id, own).within_reach:
        raise forbidden("You can book only patients who have an appointment with you.")
    clinic = the_clinic(call)
    provider_id = own if own is not None else body.provider_id
    client = store.client(call.session, clinic.id, client_id=body.client_id, phone=None)
    if client is None:
        raise invalid("client_id", "no client with this id at this clinic")
    service = appointment_service(call, clinic, with_calendar=True)
    services, providers = store.services(call.session, clinic.id), store.providers(call.session, clinic.id)
    treatment = next((s for s in services if s.id == body.service_id), None)
    if treatment is None:
        raise invalid("service_id", "no active service with this id at this clinic")
    provider = active_provider(call.session, clinic.id, provider_id) if provider_id is not None else None
    start = body.starts_at
    future(call, start)
    for_whom = f"p{provider.id}" if provider is not None else "any"  # keyed: another provider is another booking
    request = BookingRequest(
        client_id=client.id,
        service=treatment,
        start=start,
        source_key=f"staff:{client.id}:{treatment.slug}:{service.slots.iso_local(start)}:{for_whom}",
        provider=provider,
        # Texted: the booking belongs to their SMS thread (the agent sees it; no second automated confirmation).
        conversation_id=client.conversation_id if body.text_patient else None,
        patient_confirmed=False,
        notes=body.notes.strip(),
    )
    sent: list[PatientText] = []

    def record(session: Session, booking: Booking) -> None:
        audit.record(
            session,
            clinic.id,
            call.actor(),
            "appointment.booked",
            target_type="appointment",
            target_id=booking.appointment_id,
            client_id=client.id,
            detail={
                "service_id": treatment.id,
                "provider_id": booking.provider.id,
                "starts_at": start,
                "status": booking.status,
            },
        )
        if body.text_patient:
            sent.append(patient_texts.text_booked(session, clinic, client, treatment.name, booking, by=BY))

    # A provider's booking looks at their schedule alone, so a refusal suggests only their own open times.
    candidates = [provider] if own is not None and provider is not None else providers
    try:
        booking = service.book(
            request,
            candidates,
            patient_texts=lambda: store.client_texts(call.session, clinic.id, client.id),
            services=services,
            within=record,
        )
    except SlotTaken as exc:
        raise slot_taken(call, clinic, exc, None) from None
    except AppointmentError as exc:
        raise refused(exc) from None
    kinds = ["calendar"] if booking.created and booking.status != rules.PENDING_DEPOSIT else []
    text = sent[0] if sent else None
    follow_ups = enqueue_follow_ups(call, booking.appointment_id, kinds) + send_patient_text(call, text)
    return AppointmentOut.model_validate(
        answer(call, booking.appointment_id, changed=booking.created, follow_ups=follow_ups, **texted(text))
    )


# ---------------------------------------------------------------------------------------------- move
@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/move",
    summary="Move an appointment or block: same length and buffer at a new time, optionally to another provider",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=MoveIn,
    response=AppointmentOut,
)
def move_appointment(call: ApiCall) -> AppointmentOut:
    """Hours are staff's call; an overlap with another appointment or block is a 409.  Queued reminders for the
    old time are withdrawn; the deposit stays with the appointment."""
    body: MoveIn = call.body
    appointment_id = int(call.path_params["appointment_id"])
    reachable(call, appointment_id)
    clinic = the_clinic(call)
    future(call, body.starts_at)
    own = own_provider(call)

    def provider(session: Session, appt: AppointmentRow) -> tuple[int, str]:
        if body.provider_id is None or body.provider_id == appt.provider_id:
            return appt.provider_id, appt.provider_name
        if own is not None:
            raise forbidden("You can move appointments only within your own schedule.")
        chosen = active_provider(session, clinic.id, body.provider_id)
        if appt.service_id is not None and appt.service_id not in chosen.service_ids:
            raise invalid("provider_id", f"{chosen.name} does not offer {appt.service_name}")
        return chosen.id, chosen.name

    sent: list[PatientText | None] = []

    def record(session: Session, moved: Move) -> None:
        appt = moved.appointment
        audit.record(
            session,
            clinic.id,
            call.actor(),
            "appointment.moved",
            target_type=appt.kind,
            target_id=appt.id,
            client_id=appt.client_id,
            detail={
                "from": appt.starts_at,
                "to": moved.timing.starts_at,
                "from_provider_id": appt.provider_id,
                "provider_id": moved.provider_id,
            },
        )
        if body.text_patient:
            sent.append(patient_texts.text_moved(session, clinic, moved, by=BY))

    service = appointment_service(call, clinic)
    try:
        moved = service.move(locked(call, clinic, appointment_id), body.starts_at, provider=provider, within=record)
    except SlotTaken as exc:
        raise slot_taken(call, clinic, exc, appointment_id) from None
    except AppointmentError as exc:
        raise refused(exc) from None
    kinds = ["calendar"] if moved.appointment.kind == rules.APPOINTMENT else []
    text = sent[0] if sent else None
    follow_ups = enqueue_follow_ups(call, appointment_id, kinds) + send_patient_text(call, text)
    return AppointmentOut.model_validate(
        answer(call, appointment_id, changed=True, follow_ups=follow_ups, **texted(text))
    )


# ---------------------------------------------------------------------------------------------- cancel
_DEPOSIT_NOTE = {"none": "no deposit paid", "keep": "deposit kept (clinic policy)", "refund": "deposit refunded"}


def cancel_notes(outcome: Cancellation) -> list[str]:
    """What a staff cancel's answer tells staff about the money: the deposit's outcome and the fee line the
    agent's terms and the late-cancel step also read (``Cancellation.fee_note``)."""
    fee = outcome.fee_note()
    return [_DEPOSIT_NOTE[outcome.deposit_action], *([fee] if fee else [])]


@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/cancel",
    summary="Cancel an appointment (or give blocked time back); a paid deposit is refunded or kept by policy",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=CancelIn,
    response=CancellationOut,
)
def cancel_appointment(call: ApiCall) -> CancellationOut:
    """The slot is freed and queued reminders withdrawn.  The clinic's cancellation policy decides a paid
    deposit (``deposit_action``); the ``refund_deposit`` worker moves the money after the commit.  A late fee
    the policy names is reported net of a kept deposit, not charged (``late-cancel`` records a late cancellation
    with its fee)."""
    body: CancelIn = call.body
    appointment_id = int(call.path_params["appointment_id"])
    reachable(call, appointment_id)
    clinic = the_clinic(call)
    actor = call.actor()

    def note(outcome: Cancellation) -> str:
        return f"cancelled by staff ({actor.label}) in the console; {_DEPOSIT_NOTE[outcome.deposit_action]}"

    sent: list[PatientText | None] = []

    def record(session: Session, outcome: Cancellation) -> None:
        appt = outcome.appointment
        audit.record(
            session,
            clinic.id,
            actor,
            "appointment.cancelled",
            target_type=appt.kind,
            target_id=appt.id,
            client_id=appt.client_id,
            detail={"deposit_action": outcome.deposit_action, "late": outcome.terms.late},
        )
        if body.text_patient:
            sent.append(patient_texts.text_cancelled(session, clinic, outcome, by=BY))

    service = appointment_service(call, clinic)
    try:
        outcome = service.cancel(locked(call, clinic, appointment_id), reason=body.reason, note=note, within=record)
    except AppointmentError as exc:
        raise refused(exc) from None
    kinds = (["refund"] if outcome.deposit_action != "none" else []) + (
        ["calendar"] if outcome.appointment.kind == rules.APPOINTMENT else []
    )
    text = sent[0] if sent else None
    follow_ups = enqueue_follow_ups(call, appointment_id, kinds) + send_patient_text(call, text)
    terms = outcome.terms
    notes = cancel_notes(outcome)
    about_text = texted(text)
    return CancellationOut.model_validate(
        answer(
            call,
            appointment_id,
            changed=True,
            follow_ups=follow_ups,
            notes=notes + about_text["notes"],
            outbox_ids=about_text["outbox_ids"],
            late=terms.late,
            fee_cents=outcome.fee_due_cents,
            deposit_action=outcome.deposit_action,
        )
    )


# ---------------------------------------------------------------------------------------------- block
@api(
    "POST",
    "/clinics/{clinic_id:int}/blocks",
    summary="Block a provider's time (training, leave): no bookings then",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=BlockIn,
    response=AppointmentOut,
    status_code=201,
)
def block_time(call: ApiCall) -> AppointmentOut:
    """A block overlapping an appointment or another block is a 409; the same block again answers the first
    (``changed: false``).  Give the time back with ``…/appointments/{id}/cancel``."""
    body: BlockIn = call.body
    own = own_provider(call)
    if own is not None and body.provider_id != own:
        raise forbidden("You can block only your own time.")
    clinic = the_clinic(call)
    provider = active_provider(call.session, clinic.id, body.provider_id)
    if body.ends_at <= body.starts_at:
        raise invalid("ends_at", "must be after starts_at")
    if body.ends_at - body.starts_at > MAX_BLOCK:
        raise invalid("ends_at", f"a block is at most {MAX_BLOCK.days} days; add another for longer")
    if body.ends_at <= call.now:
        raise invalid("ends_at", "is in the past")
    key = (
        f"block:{provider.slug}:{body.starts_at.astimezone(UTC):%Y%m%dT%H%M}:{body.ends_at.astimezone(UTC):%Y%m%dT%H%M}"
    )

    def record(session: Session, block_id: int) -> None:
        audit.record(
            session,
            clinic.id,
            call.actor(),
            "block.created",
            target_type=rules.BLOCK,
            target_id=block_id,
            detail={"provider_id": provider.id, "starts_at": body.starts_at, "ends_at": body.ends_at},
        )

    service = appointment_service(call, clinic)
    try:
        block_id = service.block(
            provider.id, body.starts_at, body.ends_at, source_key=key, reason=body.reason, within=record
        )
    except SlotTaken as exc:
        raise slot_taken(call, clinic, exc, None) from None
    changed = block_id is not None
    if block_id is None:
        existing = call.session.execute(store.APPOINTMENT_BY_SOURCE_KEY, {"c": clinic.id, "k": key}).one()
        block_id = int(existing.id)
    return AppointmentOut.model_validate(answer(call, block_id, changed=changed))
