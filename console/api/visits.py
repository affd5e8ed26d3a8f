"""The day of a visit from the console: check in, complete (what was done, the amount charged), no-show, late
cancel — ``worker/visits/transitions.apply_transition`` in the request's transaction (the rules are
``domain/visits.py``, the same as ``medspa appointments check-in|complete|no-show|late-cancel``), audited in that
transaction; the follow-up actors it returns (a fee's charge, a deposit refund, the calendar update) are enqueued
by name after the commit.  Repeating a step changes nothing (``changed: false``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from console.api.calendar_models import AppointmentOut
from console.api.calendar_write import answer, enqueue_follow_ups, invalid, reachable
from console.api.framework import ApiCall, ApiModel, api
from console.problems import Problem
from domain.staff_access import Permission
from domain.visits import Transition
from worker.appointments import store
from worker.visits.transitions import CompletionDetails, VisitRefused, apply_transition

MAX_AMOUNT_CENTS = 10_000_000  # $100,000: anything above is a typo


class CompleteIn(ApiModel):
    amount_charged_cents: int | None = Field(
        default=None,
        ge=0,
        le=MAX_AMOUNT_CENTS,
        description="what the patient was charged, in cents (without it, the service's list price counts)",
    )
    summary: str = Field(default="", max_length=2000, description="what was done (kept on the appointment)")
    service_id: int | None = Field(default=None, ge=1, description="the service actually given, when not the booked")


class LateCancelIn(ApiModel):
    reason: str = Field(default="", max_length=500, description="why (kept on the appointment)")


_ACTIONS = {
    Transition.CHECK_IN: "appointment.checked_in",
    Transition.COMPLETE: "appointment.completed",
    Transition.NO_SHOW: "appointment.no_show",
    Transition.LATE_CANCEL: "appointment.late_cancelled",
}


def visit_step(call: ApiCall, transition: Transition, **kwargs: Any) -> AppointmentOut:
    appointment_id = int(call.path_params["appointment_id"])
    row = reachable(call, appointment_id)
    user = call.principal.user
    try:
        result = apply_transition(
            call.session,
            call.clinic.clinic_id,
            appointment_id,
            transition,
            call.now,
            by=f"staff:{user.email}"[:64],
            **kwargs,
        )
    except VisitRefused as exc:
        message = str(exc)
        raise Problem(409, "Not allowed now", message[:1].upper() + message[1:] + ".", kind="conflict") from None
    if result.changed:
        details: CompletionDetails | None = kwargs.get("details")
        call.audit(
            _ACTIONS[transition],
            target_type="appointment",
            target_id=appointment_id,
            client_id=row["client_id"],
            detail={
                "status": result.status,
                "fee": result.fee,
                "refund": result.refund,
                **({"amount_charged_cents": details.amount_charged_cents} if details else {}),
            },
        )
    follow_ups = enqueue_follow_ups(call, appointment_id, result.follow_ups())
    notes = list(result.notes) + [
        f"{kind.replace('_', ' ')} text due from {when.isoformat()}"
        for kind, when in sorted(result.due.items(), key=lambda kv: kv[1])
    ]
    return AppointmentOut.model_validate(
        answer(call, appointment_id, changed=result.changed, follow_ups=follow_ups, notes=notes)
    )


@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/check-in",
    summary="The patient arrived (queued reminders for the visit are withdrawn)",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    response=AppointmentOut,
)
def check_in_appointment(call: ApiCall) -> AppointmentOut:
    return visit_step(call, Transition.CHECK_IN)


@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/complete",
    summary="The visit happened: record what was done and the amount charged (aftercare and review follow)",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=CompleteIn,
    response=AppointmentOut,
)
def complete_appointment(call: ApiCall) -> AppointmentOut:
    """The aftercare check-in and the review request then go out at their moment (the clinic's automations, in
    the patient's allowed hours); the amount charged feeds spend segments."""
    body: CompleteIn = call.body
    slug = None
    if body.service_id is not None:
        given = next((s for s in store.services(call.session, call.clinic.clinic_id) if s.id == body.service_id), None)
        if given is None:
            raise invalid("service_id", "no active service with this id at this clinic")
        slug = given.slug
    details = CompletionDetails(amount_charged_cents=body.amount_charged_cents, summary=body.summary, service_slug=slug)
    return visit_step(call, Transition.COMPLETE, details=details)


@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/no-show",
    summary="The patient did not come: follow-up text, deposit and fee per the clinic's policy",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    response=AppointmentOut,
)
def no_show_appointment(call: ApiCall) -> AppointmentOut:
    return visit_step(call, Transition.NO_SHOW)


@api(
    "POST",
    "/clinics/{clinic_id:int}/appointments/{appointment_id:int}/late-cancel",
    summary="A cancellation inside the window: slot freed, deposit and late fee per the clinic's policy",
    tag="calendar",
    permission=Permission.SCHEDULE_WRITE,
    body=LateCancelIn,
    response=AppointmentOut,
)
def late_cancel_appointment(call: ApiCall) -> AppointmentOut:
    body: LateCancelIn = call.body
    return visit_step(call, Transition.LATE_CANCEL, reason=body.reason)
