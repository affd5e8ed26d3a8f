"""The audit log of staff actions: who, what, when, which patient.  Append-only (the app role has no UPDATE or
DELETE on it); written in the same transaction as the action it records, so one never exists without the other.
Readable by owners only (``Permission.AUDIT_READ``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_INSERT = text(
    """INSERT INTO staff_audit_log (clinic_id, staff_user_id, actor, action, target_type, target_id, client_id, detail,
                                    ip)
       VALUES (:clinic_id, :staff_user_id, :actor, :action, :target_type, :target_id, :client_id,
               CAST(:detail AS jsonb), :ip)"""
)


@dataclass(frozen=True)
class Actor:
    staff_user_id: int | None
    label: str  # the user's email, or "cli" for a command run on the server
    ip: str = ""


def record(
    session: Session,
    clinic_id: int,
    actor: Actor,
    action: str,
    *,
    target_type: str = "",
    target_id: int | None = None,
    client_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit row.  ``detail`` holds ids and choices, never message bodies or other PHI beyond the client id."""
    session.execute(
        _INSERT,
        {
            "clinic_id": clinic_id,
            "staff_user_id": actor.staff_user_id,
            "actor": actor.label[:320],
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "client_id": client_id,
            "detail": json.dumps(detail or {}, default=str),
            "ip": actor.ip[:64],
        },
    )
