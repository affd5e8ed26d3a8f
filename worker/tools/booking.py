"""Finding a time and booking it: ``check_availability`` and ``book_appointment`` over the booking service."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from domain.appointments import money
from domain.preferred_provider import merge_preferred, preferred_provider
from domain.prompt import local_label
from domain.tools import BookAppointment, CheckAvailability
from worker.appointments.rows import ProviderRow, ServiceRow
from worker.appointments.service import BookingRequest, refuse_if_contraindicated, resolve_provider, resolve_service
from worker.appointments.slots import MAX_SLOTS
from worker.tools.context import ToolContext, ToolError, price_text
from worker.waitlist.store import last_seen_provider

DEFAULT_SEARCH_DAYS = 7


def screened_choice(
    ctx: ToolContext, wanted_service: str, wanted_provider: str | None
) -> tuple[ServiceRow, ProviderRow | None, list[ProviderRow]]:
    """The service and (optional) provider a patient asked about, screened for contraindications, the provider
    qualified for it; with the clinic's providers.  Raises ``ToolError`` the model can read."""
    with ctx.scope() as session:
        services, providers = ctx.service.catalogue(session)
    service = resolve_service(services, wanted_service)
    provider = resolve_provider(providers, wanted_provider)
    refuse_if_contraindicated(service, ctx.patient_texts, services)
    if provider is not None and service.id not in provider.service_ids:
        qualified = [p.name for p in providers if service.id in p.service_ids]
        raise ToolError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
    return service, provider, providers


def check_availability(ctx: ToolContext, args: CheckAvailability) -> dict[str, Any]:
    clinic = ctx.clinic
    service, provider, providers = screened_choice(ctx, args.service, args.provider)
    today = ctx.now.astimezone(clinic.tz).date()
    first = max(today, date.fromisoformat(args.date_from)) if args.date_from else today
    last = date.fromisoformat(args.date_to) if args.date_to else first + timedelta(days=DEFAULT_SEARCH_DAYS - 1)
    last = max(first, min(last, first + timedelta(days=31)))
    candidates = [provider] if provider else providers
    time_of_day = None if args.time_of_day in (None, "any") else args.time_of_day
    slots = ctx.service.slots.open_slots(
        service, candidates, first, last, time_of_day=time_of_day, preferred_time=args.preferred_time
    )
    preferred = _preferred_provider(ctx, service, providers, provider)  # who they saw last, first
    if preferred is not None:
        mine = ctx.service.slots.open_slots(
            service, [preferred], first, last, time_of_day=time_of_day, preferred_time=args.preferred_time
        )
        slots = merge_preferred(mine, slots, MAX_SLOTS, key=lambda s: (s.start, s.provider_id))
    searched = {"from": first.isoformat(), "to": last.isoformat()}
    if not slots:
        # Widen once: the next two weeks, any time of day, anyone qualified.
        wider_last = last + timedelta(days=14)
        slots = ctx.service.slots.open_slots(service, candidates, last + timedelta(days=1), wider_last)
        searched["widened_to"] = wider_last.isoformat()
    return {
        "service": service.name,
        "duration_min": service.duration_min,
        "price": price_text(service),
        "deposit": money(service.deposit_cents) if service.deposit_cents else None,
        "searched": searched,
        "slots": [ctx.service.slots.slot_dict(s, providers) for s in slots],
        "preferred_provider": preferred.name if preferred is not None else None,
    }


def _preferred_provider(
    ctx: ToolContext, service: ServiceRow, providers: list[ProviderRow], asked: ProviderRow | None
) -> ProviderRow | None:
    """The provider of the patient's last attended visit, unless they asked for someone (``domain.preferred_provider``)."""
    if asked is not None:
        return None
    with ctx.scope() as session:
        last = last_seen_provider(session, ctx.clinic_id, ctx.client_id)
    qualified = frozenset(p.id for p in providers if service.id in p.service_ids)
    chosen = preferred_provider(last, None, qualified)
    return next((p for p in providers if p.id == chosen), None)


def book_appointment(ctx: ToolContext, args: BookAppointment) -> dict[str, Any]:
    clinic = ctx.clinic
    with ctx.scope() as session:
        services, providers = ctx.service.catalogue(session)
    service = resolve_service(services, args.service)
    provider = resolve_provider(providers, args.provider)
    refuse_if_contraindicated(service, ctx.patient_texts, services)
    start = ctx.local_start(args.start)
    booking = ctx.service.book(
        BookingRequest(
            client_id=ctx.client_id,
            service=service,
            start=start,
            source_key=f"conv:{ctx.conversation_id}:{service.slug}:{ctx.iso_local(start)}",
            provider=provider,
            conversation_id=ctx.conversation_id,
        ),
        providers,
        patient_texts=ctx.patient_texts,
        services=services,
        guard=ctx.verify_fence,
    )
    result: dict[str, Any] = {
        "ok": True,
        "appointment_id": booking.appointment_id,
        "service": service.name,
        "provider": booking.provider.name,
        "start": ctx.iso_local(start),
        "label": local_label(start, clinic.timezone),
        "status": booking.status,
    }
    if booking.deposit_cents:
        hold = booking.hold_expires_at
        result["deposit_required"] = money(booking.deposit_cents)
        result["hold_expires"] = local_label(hold, clinic.timezone) if hold else None
        result["next"] = "create_deposit_link for this appointment so the patient can pay the deposit"
    return result
