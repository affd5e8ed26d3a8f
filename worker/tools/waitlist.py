"""Joining the waitlist: ``join_waitlist`` (the rules in ``domain/waitlist.py``, the entries in ``worker/waitlist``)."""

from __future__ import annotations

from typing import Any

from domain.tools import JoinWaitlist
from worker.tools.booking import screened_choice
from worker.tools.context import ToolContext
from worker.waitlist import joining


def join_waitlist(ctx: ToolContext, args: JoinWaitlist) -> dict[str, Any]:
    clinic = ctx.clinic
    service, provider, _ = screened_choice(ctx, args.service, args.provider)
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
