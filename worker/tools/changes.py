"""The patient's changes to their own appointment: ``reschedule_appointment`` and ``cancel_appointment``, over
the booking service (the clinic's cancellation and deposit policy from ``domain.appointments``)."""

from __future__ import annotations

from typing import Any

from domain.appointments import money
from domain.prompt import local_label
from domain.tools import CancelAppointment, RescheduleAppointment
from worker.appointments.service import refuse_if_contraindicated, service_by_id
from worker.tools.context import ToolContext

# What the patient is told about their paid deposit after cancelling (a kept deposit is in the policy text).
_SETTLED = {
    "refunded": "{amount} deposit refunded",
    "failed": "refund could not be started automatically; staff will process it",
    "retry": "refund could not be started automatically; staff will process it",
}


def reschedule_appointment(ctx: ToolContext, args: RescheduleAppointment) -> dict[str, Any]:
    clinic = ctx.clinic
    with ctx.scope() as session:
        appt = ctx.own_appointment(session, args.appointment_id)
        services, providers = ctx.service.catalogue(session)
    service = service_by_id(services, appt.service_id)
    refuse_if_contraindicated(service, ctx.patient_texts, services)
    new_start = ctx.local_start(args.new_start)
    chosen = ctx.service.reschedule(
        appt,
        service,
        providers,
        new_start,
        patient_texts=ctx.patient_texts,
        services=services,
        guard=ctx.verify_fence,
    )
    return {
        "ok": True,
        "appointment_id": appt.id,
        "service": service.name,
        "provider": chosen.name,
        "from": local_label(appt.starts_at, clinic.timezone),
        "start": ctx.iso_local(new_start),
        "label": local_label(new_start, clinic.timezone),
    }


def cancel_appointment(ctx: ToolContext, args: CancelAppointment) -> dict[str, Any]:
    clinic = ctx.clinic
    outcome = ctx.service.cancel(
        lambda session: ctx.own_appointment(session, args.appointment_id),
        reason=args.reason or "",
        guard=ctx.verify_fence,
    )
    appt, terms = outcome.appointment, outcome.terms
    result: dict[str, Any] = {
        "ok": True,
        "appointment_id": appt.id,
        "cancelled": f"{appt.what} on {local_label(appt.starts_at, clinic.timezone)}",
        "late": terms.late,
        "fee": terms.fee,
        "policy": terms.policy_text(),
    }
    if outcome.deposit is not None:
        settled = ctx.service.settle_deposit(outcome, ctx.payments)
        if settled in _SETTLED:
            result["deposit"] = _SETTLED[settled].format(amount=money(outcome.deposit.amount_cents))
    return result
