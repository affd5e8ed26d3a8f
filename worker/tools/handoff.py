"""The patient's profile and the way to a person: ``update_profile`` and ``handoff_to_staff``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from domain.tools import HandoffToStaff, UpdateProfile
from worker.tools.context import ToolContext, ToolError

UPDATE_PROFILE = text(
    """UPDATE clients SET name = coalesce(:name, name), email = coalesce(:email, email)
       WHERE id = :id AND clinic_id = :c"""
)


def update_profile(ctx: ToolContext, args: UpdateProfile) -> dict[str, Any]:
    if args.name is None and args.email is None:
        raise ToolError("nothing to update: give name and/or email")
    with ctx.scope() as session:
        session.execute(
            UPDATE_PROFILE, {"name": args.name, "email": args.email, "id": ctx.client_id, "c": ctx.clinic_id}
        )
    return {"ok": True, "saved": [k for k in ("name", "email") if getattr(args, k) is not None]}


def handoff_to_staff(ctx: ToolContext, args: HandoffToStaff) -> dict[str, Any]:
    # The pipeline applies the handoff from TurnOutput.handoff in the turn's commit.
    return {"ok": True, "handoff": True, "reason": args.reason, "urgency": args.urgency}
