"""What every tool call is bound to: one conversation of one patient at one clinic, at one moment.

Why bound: clinic, patient and conversation come from the pipeline, never from the model's arguments, so a
tool call can only ever touch this patient's rows (and row-level security keeps it inside this clinic
besides).  Each tool call is one short transaction; remote calls (calendar busy times, Stripe) happen outside
any transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.clinics import load_clinic
from db.engine import Database
from domain import appointments as rules
from domain.clinic import Clinic
from domain.conversation import AppointmentView
from domain.ports import Calendar, Embedder, Payments
from domain.screening import Screening
from worker.appointments import store
from worker.appointments.rows import AppointmentError, AppointmentRow, ServiceRow
from worker.appointments.service import AppointmentService, screening, screening_dict

# A failure the model should read: becomes ``{"error": message, **extra}`` (the service's refusals are these).
ToolError = AppointmentError

_FENCE = text("SELECT version FROM conversations WHERE id = :id AND clinic_id = :c FOR SHARE")


@dataclass
class ToolContext:
    database: Database
    clinic_id: int
    client_id: int
    conversation_id: int
    fence_version: int
    now: datetime
    payments: Payments
    calendar: Calendar | None
    embedder: Embedder | None
    public_base_url: str
    hold_fallback: int | None = None
    clinic_model: Clinic | None = None
    # The patient's upcoming appointments as the turn's snapshot read them (``store.UPCOMING_OF_CONVERSATION``),
    # while still true: ``DbToolExecutor`` drops them after any tool that may have changed them (None: read again).
    known_upcoming: list[AppointmentView] | None = None
    _service: AppointmentService | None = None
    _patient_texts: list[str] | None = field(default=None)

    # ------------------------------------------------------------------ the clinic and the service
    def scope(self) -> Any:
        return self.database.tenant_scope(self.clinic_id)

    @property
    def clinic(self) -> Clinic:
        """The pipeline passes the clinic it already holds (cached per process); built by hand (tests), it is
        loaded once."""
        if self.clinic_model is None:
            with self.scope() as session:
                self.clinic_model = load_clinic(session, self.clinic_id)
            if self.clinic_model is None:
                raise ToolError("this clinic is not configured; hand off to staff")
        return self.clinic_model

    @property
    def service(self) -> AppointmentService:
        if self._service is None:
            self._service = AppointmentService(
                self.database, self.clinic, now=self.now, calendar=self.calendar, hold_minutes=self.hold_fallback
            )
        return self._service

    @property
    def hold_minutes(self) -> int:
        """How long an unpaid deposit holds the slot (clinic policy, else ``DEPOSIT_HOLD_MINUTES``)."""
        return self.clinic.hold_minutes(self.hold_fallback)

    # ------------------------------------------------------------------ times
    def local_start(self, value: str) -> datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(self.clinic.timezone))
        return moment

    def iso_local(self, moment: datetime) -> str:
        return self.service.slots.iso_local(moment)

    # ------------------------------------------------------------------ the patient's rows
    def verify_fence(self, session: Session) -> None:
        """A side effect commits only if this turn still owns the conversation."""
        version = session.execute(_FENCE, {"id": self.conversation_id, "c": self.clinic_id}).scalar_one_or_none()
        if version is None or int(version) != int(self.fence_version):
            raise ToolError("stale turn: this conversation moved on; do not retry, just reply briefly")

    def own_appointment(self, session: Session, appointment_id: int, *, live_only: bool = True) -> AppointmentRow:
        row = store.patient_appointment(session, self.clinic_id, self.client_id, appointment_id)
        # Another patient's appointment looks exactly like a missing one: nothing leaks.
        if row is None:
            raise ToolError(f"no appointment #{appointment_id} for this patient; call get_my_appointments")
        if live_only and not rules.patient_may_change(row.status, row.starts_at, self.now):
            raise ToolError(f"appointment #{appointment_id} is {row.status} and cannot be changed")
        return row

    # ------------------------------------------------------------------ screening (issue 14)
    # The clinic's contraindications are checked against what the patient said in this conversation before
    # availability is offered, before a proposal and again before booking or moving: a model that ignores the
    # prompt still cannot book a contraindicated service, and the error result tells it why.
    def patient_texts(self) -> list[str]:
        """The patient's own recent messages in this conversation, oldest first (read once per turn)."""
        if self._patient_texts is None:
            with self.scope() as session:
                self._patient_texts = store.conversation_texts(session, self.clinic_id, self.conversation_id)
        return self._patient_texts

    def screening_note(self, service: ServiceRow, services: list[ServiceRow]) -> dict[str, Any]:
        result: Screening = screening(service, self.patient_texts)
        if not result.blocked:
            return {}
        return {"screening": {**screening_dict(result, services), "offered_to_this_patient": False}}


def price_text(service: ServiceRow) -> str:
    note = f" {service.price_note}" if service.price_note else ""
    return f"{rules.money(service.price_cents)}{note}"
