"""``medspa appointments book|cancel|move``: changes made on a patient's behalf, through the one appointment
service (``worker/appointments``) the agent's tools use.

Why these rules:
- A change made for a patient texts them at most once (``worker/appointments/patient_texts.py``, shared with the
  console): the outbox row carries a dedupe key per intent, and the send is enqueued only after the transaction
  committed (the outbox sweeper covers a lost enqueue).  Consent and a textable number decide, as everywhere.
- Booking checks what the agent checks: the clinic's and provider's hours, closed dates, lead time, the
  providers' calendars, screening against what the patient told us, and the deposit rule (a service that
  takes a deposit is held ``pending_deposit`` until it is paid).  Moving is staff's call on hours; the
  exclusion constraint still refuses an overlap.
- Deposits on cancellation follow the clinic's policy (``domain.appointments``); the payments worker's
  ``refund_deposit`` moves the money.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import appointments as rules
from domain.clinic import Clinic
from scripts.appointments import clinic_facts, label, overlap_line, parse_day, parse_local, provider_id_for
from scripts.common import CommandError, add_clinic_argument
from worker.appointments import store
from worker.appointments.patient_texts import text_booked, text_cancelled, text_moved
from worker.appointments.rows import AppointmentError, AppointmentRow, ClientRow, ProviderRow, ServiceRow
from worker.appointments.service import (
    AppointmentService,
    Booking,
    BookingRequest,
    Cancellation,
    Move,
    SlotTaken,
    resolve_service,
)

FIRST_AVAILABLE_DAYS = 31
BY = "staff-cli"  # kept on the patient's text: where the change was made


def register_book(sub: Any) -> None:
    book = sub.add_parser(
        "book",
        help="book a patient (phone or walk-in) with the agent's rules; optionally text them",
        description="Book an appointment for a client at a given clinic-local time or the first open slot, with "
        "the same availability, screening and deposit rules as the agent. A service that takes a deposit is "
        "held until it is paid. --text sends the patient a confirmation (once, through the outbox).",
    )
    add_clinic_argument(book)
    book.add_argument("--client", required=True, metavar="ID|PHONE", help="client id, or phone number in E.164")
    book.add_argument("--service", required=True, metavar="SLUG", help="treatment slug (or its name)")
    book.add_argument("--provider", metavar="SLUG", help="provider slug (default: any qualified provider)")
    when = book.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar='"YYYY-MM-DD HH:MM"', help="clinic-local start time")
    when.add_argument("--first-available", action="store_true", help="the first open slot")
    book.add_argument("--after", metavar="YYYY-MM-DD", help="with --first-available: search from this day")
    book.add_argument("--text", action="store_true", help="text the patient a confirmation")
    book.add_argument("--note", metavar="TEXT", default="", help="a note for staff, kept on the appointment")
    book.set_defaults(handler=appointments_book)


# ---------------------------------------------------------------------------------------------- queue
@dataclass
class AfterCommit:
    """Work to enqueue once the transaction committed (never before: a worker must see committed rows)."""

    clinic_id: int
    outbox_ids: list[int]
    refund: bool = False
    calendar: bool = False
    appointment_id: int = 0


def _enqueue(after: AfterCommit) -> list[str]:
    """Enqueue by actor name: the texts' sends, then the refund and the calendar sync the payments worker runs."""
    from medspa.broker import SCHEDULED_QUEUE, message_for, outbox_sends
    from scripts.common import enqueue_by_name

    notes: list[str] = []
    messages = outbox_sends(after.clinic_id, after.outbox_ids)
    if after.refund:
        messages.append(message_for("refund_deposit", SCHEDULED_QUEUE, after.clinic_id, after.appointment_id))
    if after.calendar:
        messages.append(message_for("sync_calendar_event", SCHEDULED_QUEUE, after.clinic_id, after.appointment_id))
    try:
        enqueue_by_name(messages)
    except Exception as exc:  # noqa: BLE001 - the committed rows are swept later; say so, don't fail the command
        notes.append(f"could not reach the queue ({type(exc).__name__}); the sweeper will pick the work up")
    return notes


def _staff_lookup(clinic: Clinic, appointment_id: int, refusal: str) -> Any:
    """The appointment (locked), or a one-line error; ``refusal`` names what a non-live one cannot do."""

    def lookup(session: Session) -> AppointmentRow:
        appt = store.appointment_for_update(session, clinic.id, appointment_id)
        if appt is None:
            raise CommandError(f"no appointment {appointment_id} at clinic {clinic.slug!r}")
        if not rules.staff_may_change(appt.status):
            raise CommandError(f"appointment {appt.id} is {appt.status}{refusal}")
        return appt

    return lookup


# ---------------------------------------------------------------------------------------------- cancel
_DECISION = {"none": "no deposit paid", "keep": "deposit kept (clinic policy)", "refund": "deposit refund queued"}


def cancel_note(outcome: Cancellation, now: datetime) -> str:
    """The note written on a staff-cancelled appointment: when, the deposit's outcome, and the fee line the
    agent's terms, the console and the late-cancel step also read (``Cancellation.fee_note``)."""
    parts = (f"cancelled by staff {now:%Y-%m-%d %H:%M} UTC", _DECISION[outcome.deposit_action], outcome.fee_note())
    return "; ".join(p for p in parts if p)


def appointments_cancel(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise CommandError("--reason must say why the appointment is cancelled")
    from scripts.common import app_database

    clinic = clinic_facts(args.clinic)
    now = datetime.now(UTC)
    service = AppointmentService(app_database(), clinic, now=now)
    report: list[str] = []
    texts: list[int] = []

    def note(outcome: Cancellation) -> str:
        return cancel_note(outcome, now)

    def text_them(session: Session, outcome: Cancellation) -> None:
        nonlocal texts
        sent = text_cancelled(session, clinic, outcome, by=BY)
        if sent is not None:
            texts = list(sent.outbox_ids)
            report.append(sent.summary)

    try:
        outcome = service.cancel(
            _staff_lookup(clinic, args.appointment_id, ", not cancelled again"),
            reason=reason,
            note=note,
            within=text_them,
        )
    except AppointmentError as exc:
        raise CommandError(str(exc)) from None
    appt, action = outcome.appointment, outcome.deposit_action
    is_visit = appt.kind == rules.APPOINTMENT
    report += _enqueue(
        AfterCommit(clinic.id, texts, refund=action != "none", calendar=is_visit, appointment_id=appt.id)
    )
    print(
        f"cancelled appointment {appt.id}: {appt.service_name or 'blocked time'} with {appt.provider_name}, "
        f"{label(appt.starts_at, clinic.tz)} (slot freed)"
    )
    extra = outcome.fee_note()
    for line in report + [f"deposit: {_DECISION[action]}"] + ([extra] if extra else []):
        print(f"  {line}")
    if is_visit:
        print("  calendar: update queued")
    return 0


# ---------------------------------------------------------------------------------------------- move
def appointments_move(args: argparse.Namespace) -> int:
    from scripts.common import app_database

    clinic = clinic_facts(args.clinic)
    new_start = parse_local(args.to, clinic.tz, "--to")
    if new_start <= datetime.now(UTC):
        raise CommandError(f"{args.to} is in the past; pick a future time")
    service = AppointmentService(app_database(), clinic, now=datetime.now(UTC))
    texts: list[int] = []
    report: list[str] = []
    chosen = {"name": ""}

    def provider(session: Session, appt: AppointmentRow) -> tuple[int, str]:
        chosen["name"] = appt.provider_name
        if not args.provider or args.provider == appt.provider_slug:
            return appt.provider_id, appt.provider_name
        provider_id = provider_id_for(session, clinic, args.provider)
        name = str(session.execute(text("SELECT name FROM providers WHERE id = :id"), {"id": provider_id}).scalar_one())
        chosen["name"] = name
        offers = session.execute(
            text("SELECT 1 FROM provider_services WHERE provider_id = :p AND service_id = :s"),
            {"p": provider_id, "s": appt.service_id},
        ).first()
        if appt.service_id is not None and not offers:
            raise CommandError(f"provider {args.provider!r} does not offer {appt.service_name}")
        return provider_id, name

    def text_them(session: Session, moved: Move) -> None:
        nonlocal texts
        sent = text_moved(session, clinic, moved, by=BY)
        if sent is not None:
            texts = list(sent.outbox_ids)
            report.append(sent.summary)

    try:
        moved = service.move(
            _staff_lookup(clinic, args.appointment_id, "; only live appointments move"),
            new_start,
            provider=provider,
            within=text_them,
        )
    except SlotTaken as exc:
        clash = overlap_line(clinic, exc.provider_id, exc.start, exc.end, args.appointment_id)
        raise CommandError(f"{args.to} overlaps {clash} for {chosen['name']}; nothing changed") from None
    except AppointmentError as exc:
        raise CommandError(str(exc)) from None
    appt = moved.appointment
    is_visit = appt.kind == rules.APPOINTMENT
    report += _enqueue(AfterCommit(clinic.id, texts, calendar=is_visit, appointment_id=appt.id))
    print(
        f"moved appointment {appt.id}: {appt.service_name or 'blocked time'} now {label(new_start, clinic.tz)} "
        f"with {moved.provider_name}"
    )
    for line in report:
        print(f"  {line}")
    if appt.deposit_cents:
        print("  deposit: stays with the appointment")
    if is_visit:
        print("  calendar: update queued")
    return 0


# ---------------------------------------------------------------------------------------------- book
def _client(session: Session, clinic: Clinic, wanted: str) -> ClientRow:
    value = wanted.strip()
    if value.isdigit():
        found = store.client(session, clinic.id, client_id=int(value), phone=None)
    elif value.startswith("+") and value[1:].isdigit():
        found = store.client(session, clinic.id, client_id=None, phone=value)
    else:
        raise CommandError(f"--client {wanted!r}: give a client id or a phone number in E.164 (+14155550123)")
    if found is None:
        raise CommandError(f"no client {wanted!r} at clinic {clinic.slug!r} (see: medspa clients search)")
    return found


def _pick_service(services: list[ServiceRow], wanted: str, clinic: Clinic) -> ServiceRow:
    try:
        return resolve_service(services, wanted)
    except AppointmentError:
        known = ", ".join(s.slug for s in services) or "none"
        raise CommandError(f"no service {wanted!r} at clinic {clinic.slug!r} (services: {known})") from None


def _pick_provider(providers: list[ProviderRow], wanted: str | None, service: ServiceRow) -> ProviderRow | None:
    qualified = ", ".join(p.slug for p in providers if service.id in p.service_ids) or "none"
    if not wanted:
        return None
    provider = next((p for p in providers if p.slug == wanted.strip()), None)
    if provider is None:
        raise CommandError(f"no provider {wanted!r} (providers for {service.name}: {qualified})")
    if service.id not in provider.service_ids:
        raise CommandError(f"provider {wanted!r} does not offer {service.name} (qualified: {qualified})")
    return provider


def _refusal(exc: AppointmentError, service: ServiceRow, clinic: Clinic) -> CommandError:
    """The service's refusal (written for the agent) as one line for staff."""
    screening = exc.extra.get("screening")
    if screening:
        conditions = ", ".join(screening.get("conditions") or ()) or "a contraindication"
        return CommandError(
            f"screening: {service.name} is not offered to this patient now ({conditions}); nothing booked"
        )
    alternatives = exc.extra.get("alternatives") or []
    if alternatives:
        options = "; ".join(f"{a['start'].replace('T', ' ')} with {a['provider']}" for a in alternatives)
        return CommandError(f"{exc}; nothing booked (open nearby: {options})")
    return CommandError(f"{exc}; nothing booked")


def appointments_book(args: argparse.Namespace) -> int:
    from medspa.settings import get_settings
    from scripts.common import app_database
    from worker.container import build_calendar

    clinic = clinic_facts(args.clinic)
    settings = get_settings()
    database = app_database()
    now = datetime.now(UTC)
    service = AppointmentService(
        database, clinic, now=now, calendar=build_calendar(settings), hold_minutes=settings.deposit_hold_minutes
    )
    with database.tenant_scope(clinic.id) as session:
        client = _client(session, clinic, args.client)
        services, providers = service.catalogue(session)
    treatment = _pick_service(services, args.service, clinic)
    provider = _pick_provider(providers, args.provider, treatment)

    def patient_texts() -> list[str]:
        with database.tenant_scope(clinic.id) as session:
            return store.client_texts(session, clinic.id, client.id)

    if args.at:
        start = parse_local(args.at, clinic.tz, "--at")
        if start <= now:
            raise CommandError(f"{args.at} is in the past; pick a future time")
    else:
        first = max(parse_day(args.after, clinic.tz), now.astimezone(clinic.tz).date())
        candidates = [provider] if provider else providers
        slots = service.slots.open_slots(
            treatment, candidates, first, first + timedelta(days=FIRST_AVAILABLE_DAYS - 1), limit=1
        )
        if not slots:
            raise CommandError(f"no open time for {treatment.name} in the {FIRST_AVAILABLE_DAYS} days from {first}")
        start = slots[0].start
        provider = next(p for p in providers if p.id == slots[0].provider_id)
    texts: list[int] = []
    report: list[str] = []

    def text_them(session: Session, booking: Booking) -> None:
        nonlocal texts
        if not args.text:
            return
        sent = text_booked(session, clinic, client, treatment.name, booking, by=BY)
        texts = list(sent.outbox_ids)
        report.append(sent.summary)

    request = BookingRequest(
        client_id=client.id,
        service=treatment,
        start=start,
        source_key=f"staff:{client.id}:{treatment.slug}:{service.slots.iso_local(start)}",
        provider=provider,
        # Texted: the booking belongs to their SMS thread (the agent sees it; no second automated confirmation).
        conversation_id=client.conversation_id if args.text else None,
        patient_confirmed=False,
        notes=args.note.strip(),
    )
    try:
        booking = service.book(request, providers, patient_texts=patient_texts, services=services, within=text_them)
    except SlotTaken as exc:
        clash = overlap_line(clinic, exc.provider_id, exc.start, exc.end, None)
        raise CommandError(f"{label(start, clinic.tz)} overlaps {clash}; nothing booked") from None
    except AppointmentError as exc:
        raise _refusal(exc, treatment, clinic) from None
    on_calendar = booking.status != rules.PENDING_DEPOSIT
    report += _enqueue(AfterCommit(clinic.id, texts, calendar=on_calendar, appointment_id=booking.appointment_id))
    verb = "booked" if booking.created else "already booked"
    print(
        f"{verb} appointment {booking.appointment_id}: {treatment.name} with {booking.provider.name}, "
        f"{label(start, clinic.tz)} ({booking.status})"
    )
    if booking.deposit_cents:
        hold = booking.hold_expires_at
        until = f"; held until {label(hold, clinic.tz)}" if hold else ""
        print(f"  deposit: {rules.money(booking.deposit_cents)} due{until}")
    for line in report:
        print(f"  {line}")
    if on_calendar:
        print("  calendar: update queued")
    return 0
