"""``propose_action``: what the agent will do, checked but not done (no side effects); the patient's yes
makes the matching side-effect tool call."""

from __future__ import annotations

from typing import Any

from domain.appointments import PENDING_DEPOSIT, money
from domain.prompt import local_label
from domain.tools import ProposeAction
from worker.appointments.service import (
    refuse_if_contraindicated,
    resolve_provider,
    resolve_service,
    service_by_id,
)
from worker.tools.context import ToolContext, ToolError, price_text


def propose_action(ctx: ToolContext, args: ProposeAction) -> dict[str, Any]:
    if args.action == "book":
        return _propose_booking(ctx, args)
    if args.appointment_id is None:
        raise ToolError(f"propose_action({args.action}) needs appointment_id (see get_my_appointments)")
    clinic = ctx.clinic
    with ctx.scope() as session:
        appt = ctx.own_appointment(session, args.appointment_id)
        # A cancel is quoted from the deposit actually paid, read as the cancel will read it (same transaction as
        # the appointment): the quote is what the cancel then does.
        terms = ctx.service.cancellation_terms(session, appt)[0] if args.action == "cancel" else None
    when = local_label(appt.starts_at, clinic.timezone)
    what = f"{appt.what} with {appt.provider_name} on {when}"
    if args.action == "reschedule":
        if not args.start:
            raise ToolError("propose_action(reschedule) needs start (the new time)")
        new_start = ctx.local_start(args.start)
        with ctx.scope() as session:
            services, providers = ctx.service.catalogue(session)
        service = service_by_id(services, appt.service_id)
        refuse_if_contraindicated(service, ctx.patient_texts, services)
        current = next((p for p in providers if p.id == appt.provider_id), None)
        chosen = ctx.service.pick_provider(service, providers, new_start, current, ignore=appt.id)
        return {
            "action": "reschedule",
            "service": service.slug,
            "service_name": service.name,
            "start": ctx.iso_local(new_start),
            "provider": chosen.slug,
            "provider_name": chosen.name,
            "appointment_id": appt.id,
            "summary": f"Move {what} to {local_label(new_start, clinic.timezone)} with {chosen.name}.",
        }
    if terms is not None:
        return {
            "action": "cancel",
            "service": None,
            "start": None,
            "provider": None,
            "appointment_id": appt.id,
            "summary": f"Cancel {what}. {terms.policy_text()}",
            "late": terms.late,
        }
    # deposit
    if appt.status != PENDING_DEPOSIT or not appt.deposit_cents:
        raise ToolError("that appointment does not need a deposit")
    return {
        "action": "deposit",
        "service": None,
        "start": None,
        "provider": None,
        "appointment_id": appt.id,
        "summary": f"Send a {money(appt.deposit_cents)} deposit link for {what}.",
    }


def _propose_booking(ctx: ToolContext, args: ProposeAction) -> dict[str, Any]:
    if not args.service or not args.start:
        raise ToolError("propose_action(book) needs service and start")
    clinic = ctx.clinic
    with ctx.scope() as session:
        services, providers = ctx.service.catalogue(session)
    service = resolve_service(services, args.service)
    provider = resolve_provider(providers, args.provider)
    refuse_if_contraindicated(service, ctx.patient_texts, services)
    start = ctx.local_start(args.start)
    chosen = ctx.service.slots.check(service, providers, start, provider)
    label = local_label(start, clinic.timezone)
    deposit = f" A {money(service.deposit_cents)} deposit holds the slot." if service.deposit_cents else ""
    return {
        "action": "book",
        "service": service.slug,
        "service_name": service.name,
        "start": ctx.iso_local(start),
        "provider": chosen.slug,
        "provider_name": chosen.name,
        "appointment_id": None,
        "summary": f"{service.name} with {chosen.name} on {label} ({price_text(service)}).{deposit}",
        "deposit_cents": service.deposit_cents,
    }
