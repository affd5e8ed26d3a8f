"""Joining the waitlist: ``join_waitlist`` (the rules in ``domain/waitlist.py``, the entries in ``worker/waitlist``)."""

from __future__ import annotations

from typing import Any

from domain.tools import JoinWaitlist
from worker.appointments.service import refuse_if_contraindicated, resolve_provider, resolve_service
from worker.tools.context import ToolContext, ToolError
from worker.waitlist import joining


def join_waitlist(ctx: ToolContext, args: JoinWaitlist) -> dict[str, Any]:
    clinic = ctx.clinic
    with ctx.scope() as session:
        services, providers = ctx.service.catalogue(session)
    service = resolve_service(services, args.service)
    provider = resolve_provider(providers, args.provider)
    refuse_if_contraindicated(service, ctx.patient_texts, services)
    if provider is not None and service.id not in provider.service_ids:
        qualified = [p.name for p in providers if service.id in p.service_ids]
        raise ToolError(f"{provider.name} does not do {service.name}", qualified_providers=qualified)
    return joining.join_from_tool(
        ctx.database,
        ctx.clinic_id,
        ctx.client_id,
        ctx.conversation_id,
        args,
        service=(service.id, service.name),
        provider=(provider.id, provider.name) if provider else None,
        policies=clinic.policies,
        today=ctx.now.astimezone(clinic.tz).date(),
    )
