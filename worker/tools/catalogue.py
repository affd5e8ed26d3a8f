"""Answers: the treatment menu, one treatment's details, and the clinic's knowledge base."""

from __future__ import annotations

from typing import Any

from domain.appointments import money
from domain.screening import conditions_not_for
from domain.tools import GetServiceDetails, SearchKnowledge, ToolArgs
from worker import knowledge
from worker.appointments import store
from worker.appointments.service import resolve_service
from worker.tools.context import ToolContext, price_text


def list_services(ctx: ToolContext, args: ToolArgs) -> dict[str, Any]:
    with ctx.scope() as session:
        services = store.services(session, ctx.clinic_id)
    return {
        "services": [
            {
                "name": s.name,
                "category": s.category,
                "price": price_text(s),
                "duration_min": s.duration_min,
                "deposit": money(s.deposit_cents) if s.deposit_cents else None,
                "not_for": conditions_not_for(s.contraindications),
            }
            for s in services
        ]
    }


def get_service_details(ctx: ToolContext, args: GetServiceDetails) -> dict[str, Any]:
    with ctx.scope() as session:
        services, providers = ctx.service.catalogue(session)
    service = resolve_service(services, args.service)
    return {
        "service": service.slug,
        "name": service.name,
        "description": service.description,
        "price": price_text(service),
        "duration_min": service.duration_min,
        "deposit": money(service.deposit_cents) if service.deposit_cents else None,
        "prep": service.prep_instructions,
        "providers": [p.name for p in providers if service.id in p.service_ids],
        # The clinic's screening rules, and which of them this patient's own messages hit (see screening).
        "contraindications": [{"condition": c.condition, "position": c.position} for c in service.contraindications],
        **ctx.screening_note(service, services),
    }


def search_knowledge(ctx: ToolContext, args: SearchKnowledge) -> dict[str, Any]:
    hits = knowledge.search_knowledge(ctx.database, ctx.clinic_id, args.query, ctx.embedder, k=3)
    if not hits:
        return {"results": [], "note": "nothing in the clinic's knowledge base; offer to ask staff"}
    return {"results": [h.as_dict() for h in hits]}
