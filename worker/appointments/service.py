"""Book, cancel and move appointments: one service for the agent's tools, the staff commands and the console.

Why it is shaped this way:
- Availability is checked before the write (outside any transaction: provider calendars are remote), and the
  exclusion constraint on (provider, time range) is the final guard: an overlap raises :class:`SlotTaken`
  with alternatives, and nothing is half-written.
- Screening (``domain.screening``) runs on what the patient said before anything is offered or written, for
  the agent and for staff alike.
- Deposits follow ``domain.appointments``: a service with a deposit is booked ``pending_deposit`` with a hold;
  a cancellation decides refund or keep by the clinic's policy, records it, and the money moves through
  ``worker.deposit_refunds.settle_deposit`` (inline for the agent, the ``refund_deposit`` actor for staff).
- Callers add their own work to the same transaction (``guard``: the agent's fencing check; ``within``: a
  staff text to the patient through the outbox) and enqueue follow-ups after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg.errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.engine import Database
from domain import appointments as rules
from domain.appointments import DepositAction, LateCancelMoney, Timing
from domain.catalog import ServiceRef, find_service_mentions
from domain.clinic import Clinic
from domain.ports import Calendar, PaymentError, Payments
from domain.screening import Screening, screen_texts
from worker import deposit_refunds
from worker.appointments import store
from worker.appointments.rows import AppointmentError, AppointmentRow, PaidDeposit, ProviderRow, ServiceRow
from worker.appointments.slots import Availability
from worker.automations import withdraw_appointment_messages

log = logging.getLogger(__name__)

Guard = Callable[[Session], None]
Lookup = Callable[[Session], AppointmentRow]
# What the patient said lately, read only when the service has contraindications to screen for.
Texts = Callable[[], Sequence[str]]


class SlotTaken(AppointmentError):
    """The exclusion constraint refused the write: another appointment or block holds that time."""

    def __init__(self, message: str, *, provider_id: int, start: datetime, end: datetime, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.provider_id, self.start, self.end = provider_id, start, end


def is_exclusion_violation(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "orig", None), psycopg.errors.ExclusionViolation)


# ---------------------------------------------------------------------------------------------- catalogue
def resolve_service(services: list[ServiceRow], wanted: str) -> ServiceRow:
    """By slug or name, else the first service the words mention (synonyms, misspellings)."""
    key = wanted.strip().lower()
    for service in services:
        if key in (service.slug.lower(), service.name.lower()):
            return service
    refs = [ServiceRef(s.id, s.name, s.category, s.synonyms) for s in services]
    mentions = find_service_mentions(wanted, refs)
    if mentions:
        return next(s for s in services if s.id == mentions[0].id)
    raise AppointmentError(f"no treatment called {wanted!r}", offered=[s.name for s in services])


def resolve_provider(providers: list[ProviderRow], wanted: str | None) -> ProviderRow | None:
    """By slug, name, name without "Dr." or first name; None when not asked for."""
    if wanted is None or not wanted.strip():
        return None
    key = wanted.strip().lower().removeprefix("dr. ").removeprefix("dr ")
    for provider in providers:
        names = {provider.slug.lower(), provider.name.lower()}
        plain = provider.name.lower().removeprefix("dr. ").removeprefix("dr ")
        names |= {plain, plain.split()[0]} if plain else set()
        if key in names or key == provider.name.lower():
            return provider
    raise AppointmentError(f"no provider called {wanted!r}", providers=[p.name for p in providers])


def service_by_id(services: list[ServiceRow], service_id: int | None) -> ServiceRow:
    for service in services:
        if service.id == service_id:
            return service
    raise AppointmentError("the appointment's treatment is no longer offered; hand off to staff")


# ---------------------------------------------------------------------------------------------- screening
def screening(service: ServiceRow, patient_texts: Texts) -> Screening:
    if not service.contraindications:
        return Screening(service.name)
    return screen_texts(service.name, service.contraindications, list(patient_texts()))


def screening_dict(result: Screening, services: list[ServiceRow]) -> dict[str, Any]:
    names = {s.slug: s.name for s in services}
    return {
        "service": result.service,
        "conditions": list(result.conditions),
        "position": result.position,
        "suggest": [names.get(slug, slug) for slug in result.suggest],
    }


def refuse_if_contraindicated(service: ServiceRow, patient_texts: Texts, services: list[ServiceRow]) -> None:
    result = screening(service, patient_texts)
    if not result.blocked:
        return
    raise AppointmentError(
        f"screening: {service.name} is not offered to this patient now ({', '.join(result.conditions)}); "
        "tell them the clinic's position, suggest the alternatives, and do not offer times or book it",
        screening=screening_dict(result, services),
    )


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BookingRequest:
    client_id: int
    service: ServiceRow
    start: datetime
    # The intent's idempotency key: booking it again answers with its booking while that still holds this time.
    source_key: str
    provider: ProviderRow | None = None  # None: the first qualified provider free then
    conversation_id: int | None = None
    patient_confirmed: bool = True  # the patient said yes (the agent's proposal); staff bookings say so too
    notes: str = ""


@dataclass(frozen=True)
class Booking:
    appointment_id: int
    status: str
    provider: ProviderRow
    timing: Timing
    deposit_cents: int
    hold_expires_at: datetime | None
    created: bool  # False: the same intent had already booked it


@dataclass
class Cancellation:
    appointment: AppointmentRow
    terms: LateCancelMoney
    deposit: PaidDeposit | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deposit_action(self) -> DepositAction:
        """The deposit's outcome is the terms' own: read from them so the quote and the settlement cannot differ."""
        return self.terms.deposit_action

    @property
    def is_visit(self) -> bool:
        """A patient's visit: blocked time given back carries no fee, whatever the window says."""
        return self.appointment.kind == rules.APPOINTMENT

    @property
    def fee_due_cents(self) -> int:
        """The late fee still due after a kept deposit (what the late-cancel step would charge; 0 for a block)."""
        return self.terms.fee_due_cents if self.is_visit else 0

    def fee_note(self) -> str:
        """The fee line staff read about this cancellation (console and ``medspa appointments cancel`` alike)."""
        return self.terms.staff_note() if self.is_visit else ""


@dataclass(frozen=True)
class Move:
    appointment: AppointmentRow
    timing: Timing
    provider_id: int
    provider_name: str


def _existing(row: Any, provider: ProviderRow) -> Booking:
    """The booking an earlier call made (``store.APPOINTMENT_BY_SOURCE_KEY``'s row), as it stands."""
    timing = Timing(row.starts_at, row.ends_at, row.blocked_until)
    return Booking(int(row.id), row.status, provider, timing, int(row.deposit_cents), row.hold_expires_at, False)


class AppointmentService:
    """Appointments of one clinic as of ``now``."""

    def __init__(
        self,
        database: Database,
        clinic: Clinic,
        *,
        now: datetime,
        calendar: Calendar | None = None,
        hold_minutes: int | None = None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.database = database
        self.clinic = clinic
        self.now = now
        self.hold_minutes = clinic.hold_minutes(hold_minutes)
        self.slots = Availability(database, clinic, now=now, calendar=calendar)

    def scope(self) -> Any:
        return self.database.tenant_scope(self.clinic.id)

    def catalogue(self, session: Session) -> tuple[list[ServiceRow], list[ProviderRow]]:
        return store.services(session, self.clinic.id), store.providers(session, self.clinic.id)

    def _taken(self, exc: DBAPIError, provider_id: int, timing: Timing, **extra: Any) -> SlotTaken:
        if not is_exclusion_violation(exc):
            raise exc
        return SlotTaken(
            "slot just taken by another booking",
            provider_id=provider_id,
            start=timing.starts_at,
            end=timing.blocked_until,
            **extra,
        )

    # ------------------------------------------------------------------ book
    def book(
        self,
        request: BookingRequest,
        providers: list[ProviderRow],
        *,
        patient_texts: Texts,
        services: list[ServiceRow],
        guard: Guard | None = None,
        within: Callable[[Session, Booking], None] | None = None,
    ) -> Booking:
        """Screen, check the slot, then write the appointment in one transaction (idempotent per source key: see
        :meth:`_earlier_booking`)."""
        service = request.service
        refuse_if_contraindicated(service, patient_texts, services)
        try:
            chosen = self.slots.check(service, providers, request.start, request.provider)
        except AppointmentError:
            # Asked again for a booking already made (its own booking makes the time look taken): that booking.
            with self.scope() as session:
                _, earlier = self._earlier_booking(session, request)
            provider = next((p for p in providers if earlier is not None and p.id == earlier.provider_id), None)
            if earlier is None or provider is None:
                raise
            return _existing(earlier, provider)
        timing = rules.visit_timing(request.start, service.duration_min, service.buffer_min)
        deposit = service.deposit_cents
        status = rules.booking_status(deposit)
        hold = rules.hold_expiry(self.now, deposit, self.hold_minutes)
        try:
            with self.scope() as session:
                if guard is not None:
                    guard(session)
                while True:
                    key, earlier = self._earlier_booking(session, request)
                    if earlier is not None:
                        provider = next((p for p in providers if p.id == earlier.provider_id), chosen)
                        booking = _existing(earlier, provider)
                        break
                    new_id = session.execute(
                        store.INSERT_APPOINTMENT,
                        {
                            "c": self.clinic.id,
                            "client": request.client_id,
                            "p": chosen.id,
                            "s": service.id,
                            "conv": request.conversation_id,
                            "start": timing.starts_at,
                            "end": timing.ends_at,
                            "blocked": timing.blocked_until,
                            "status": status,
                            "key": key,
                            "deposit": deposit,
                            "hold": hold,
                            "confirmed": self.now if request.patient_confirmed else None,
                            "notes": request.notes,
                        },
                    ).scalar_one_or_none()
                    if new_id is not None:
                        booking = Booking(int(new_id), status, chosen, timing, deposit, hold, True)
                        break
                    # A concurrent call (a retry racing its original) wrote under this key first; it has committed
                    # (the insert waited for it), so reading the key again answers with it or moves past it.
                if within is not None and booking.created:
                    within(session, booking)
        except DBAPIError as exc:
            raise self._taken(
                exc, chosen.id, timing, alternatives=self.slots.alternatives(service, providers, request.start)
            ) from None
        return booking

    def _earlier_booking(self, session: Session, request: BookingRequest) -> tuple[str, Any | None]:
        """The key to book ``request`` under, and the appointment already booked for it (None: book anew).

        The source key dedupes a retry of the same booking.  But the appointment under it may no longer be that
        booking (``rules.is_same_booking``: cancelled, expired, or moved to another time since) while the
        patient asks for that time again: then the booking is a new one, under the key followed by the earlier
        appointment's id — deterministic, so a retry of the new booking finds it the same way."""
        key = request.source_key
        while True:
            row = session.execute(store.APPOINTMENT_BY_SOURCE_KEY, {"c": self.clinic.id, "k": key}).one_or_none()
            if row is None:
                return key, None
            if rules.is_same_booking(row.status, row.starts_at, request.start):
                return key, row
            key = f"{request.source_key}:{row.id}"

    # ------------------------------------------------------------------ cancel
    def cancel(
        self,
        lookup: Lookup,
        *,
        reason: str,
        guard: Guard | None = None,
        note: Callable[[Cancellation], str] | None = None,
        within: Callable[[Session, Cancellation], None] | None = None,
    ) -> Cancellation:
        """Cancel (one transaction): free the slot, withdraw its queued texts, decide the deposit by the clinic's
        policy.  The money moves after the commit: :meth:`settle_deposit` or the ``refund_deposit`` actor."""
        with self.scope() as session:
            if guard is not None:
                guard(session)
            appt = lookup(session)
            terms, paid = self.cancellation_terms(session, appt)
            outcome = Cancellation(appt, terms, paid)
            updated = session.execute(
                store.CANCEL,
                {"now": self.now, "reason": reason, "note": note(outcome) if note else "", "id": appt.id},
            ).scalar_one_or_none()
            if updated is None:
                raise AppointmentError(f"appointment #{appt.id} is {appt.status} and cannot be changed")
            withdraw_appointment_messages(session, self.clinic.id, appt.id)
            if within is not None:
                within(session, outcome)
        return outcome

    def cancellation_terms(self, session: Session, appt: AppointmentRow) -> tuple[LateCancelMoney, PaidDeposit | None]:
        """What cancelling ``appt`` now costs, from the deposit actually paid (not the one the service asks for):
        the agent's proposal quotes it and :meth:`cancel` records it, so the two say the same."""
        paid = store.settleable_deposit(session, appt.id)
        terms = rules.late_cancel_money(
            self.clinic.cancellation,
            appt.starts_at,
            self.now,
            paid.amount_cents if paid else 0,
            refund_due=paid is not None and paid.status == "refund_due",
        )
        return terms, paid

    def settle_deposit(self, outcome: Cancellation, payments: Payments) -> str:
        """Refund or keep the cancelled appointment's paid deposit now: 'refunded' | 'kept' | 'failed' | 'retry'
        ('retry': the provider failed transiently; the ``retry_deposit_refunds`` sweep finishes it)."""
        if outcome.deposit is None:
            return "nothing"
        try:
            return deposit_refunds.settle_deposit(self.database, payments, self.clinic.id, outcome.appointment.id)
        except PaymentError:
            return "retry"
        except Exception:  # noqa: BLE001 - the cancellation is committed; the sweep settles what is left
            log.exception("deposit settlement failed", extra={"clinic_id": self.clinic.id})
            return "retry"

    # ------------------------------------------------------------------ move
    def reschedule(
        self,
        appt: AppointmentRow,
        service: ServiceRow,
        providers: list[ProviderRow],
        new_start: datetime,
        *,
        patient_texts: Texts,
        services: list[ServiceRow],
        guard: Guard | None = None,
    ) -> ProviderRow:
        """The patient's move: screened, to a free slot (their provider if free, else anyone qualified), the
        service's own length; the patient confirmed it.  Returns the provider."""
        refuse_if_contraindicated(service, patient_texts, services)
        current = next((p for p in providers if p.id == appt.provider_id), None)
        chosen = self.pick_provider(service, providers, new_start, current, ignore=appt.id)
        timing = rules.visit_timing(new_start, service.duration_min, service.buffer_min)
        try:
            with self.scope() as session:
                if guard is not None:
                    guard(session)
                self._move(session, appt.id, timing, chosen.id, confirmed=True)
        except DBAPIError as exc:
            raise self._taken(
                exc,
                chosen.id,
                timing,
                alternatives=self.slots.alternatives(service, providers, new_start, ignore_appointment=appt.id),
            ) from None
        return chosen

    def pick_provider(
        self,
        service: ServiceRow,
        providers: list[ProviderRow],
        start: datetime,
        current: ProviderRow | None,
        *,
        ignore: int,
    ) -> ProviderRow:
        """For a move: the current provider when free at ``start``, else the first qualified one free."""
        try:
            return self.slots.check(service, providers, start, current, ignore_appointment=ignore)
        except AppointmentError:
            return self.slots.check(service, providers, start, None, ignore_appointment=ignore)

    def move(
        self,
        lookup: Lookup,
        new_start: datetime,
        *,
        provider: Callable[[Session, AppointmentRow], tuple[int, str]] | None = None,
        within: Callable[[Session, Move], None] | None = None,
    ) -> Move:
        """Staff's move: same length and buffer at ``new_start`` (hours are staff's call; the exclusion
        constraint still refuses an overlap), optionally to another provider."""
        provider_id, timing = 0, rules.Timing(new_start, new_start, new_start)
        try:
            with self.scope() as session:
                appt = lookup(session)
                provider_id, provider_name = (
                    provider(session, appt) if provider else (appt.provider_id, appt.provider_name)
                )
                timing = rules.moved_timing(appt.starts_at, appt.ends_at, appt.blocked_until, new_start)
                self._move(session, appt.id, timing, provider_id, confirmed=False)
                moved = Move(appt, timing, provider_id, provider_name)
                if within is not None:
                    within(session, moved)
        except DBAPIError as exc:
            raise self._taken(exc, provider_id, timing) from None
        return moved

    # ------------------------------------------------------------------ block
    def block(
        self,
        provider_id: int,
        start: datetime,
        end: datetime,
        *,
        source_key: str,
        reason: str,
        within: Callable[[Session, int], None] | None = None,
    ) -> int | None:
        """Block a provider's time (idempotent per ``source_key``: None when that block exists already); an
        overlap with an appointment or another block raises :class:`SlotTaken`.  ``within`` runs in the same
        transaction with the new block's id (not for a repeat)."""
        timing = Timing(start, end, end)
        try:
            with self.scope() as session:
                block_id = session.execute(
                    store.INSERT_BLOCK,
                    {"c": self.clinic.id, "p": provider_id, "s": start, "e": end, "key": source_key, "reason": reason},
                ).scalar_one_or_none()
                if within is not None and block_id is not None:
                    within(session, int(block_id))
        except DBAPIError as exc:
            raise self._taken(exc, provider_id, timing) from None
        return int(block_id) if block_id is not None else None

    def _move(
        self, session: Session, appointment_id: int, timing: Timing, provider_id: int, *, confirmed: bool
    ) -> None:
        updated = session.execute(
            store.MOVE,
            {
                "start": timing.starts_at,
                "end": timing.ends_at,
                "blocked": timing.blocked_until,
                "p": provider_id,
                "confirmed": self.now if confirmed else None,
                "id": appointment_id,
            },
        ).scalar_one_or_none()
        if updated is None:
            raise AppointmentError("that appointment can no longer be changed")
        withdraw_appointment_messages(session, self.clinic.id, appointment_id)  # reminders for the old time
