"""The ``join_waitlist`` tool's database side: the executor resolves the service and provider (its own helpers,
the same screening as booking) and hands the rest here."""

from __future__ import annotations

from datetime import date
from typing import Any

from db.engine import Database
from domain.tools import JoinWaitlist
from domain.waitlist import WaitlistError, hold_minutes, joined_text, windows_from_request, windows_to_json
from worker.waitlist import store


def join_from_tool(
    database: Database,
    clinic_id: int,
    client_id: int,
    conversation_id: int,
    args: JoinWaitlist,
    *,
    service: tuple[int, str],
    provider: tuple[int, str] | None,
    policies: dict[str, Any],
    today: date,
) -> dict[str, Any]:
    """Add (or update) the patient's entry for the service; a result for the model (``error`` on bad input)."""
    try:
        windows = windows_from_request(args.days, args.time_of_day, args.earliest, args.latest)
    except WaitlistError as exc:
        return {"error": f"join_waitlist: {exc}"}
    date_from = date.fromisoformat(args.date_from) if args.date_from else None
    date_to = date.fromisoformat(args.date_to) if args.date_to else None
    if date_from is not None and date_from < today:
        date_from = today
    if date_to is not None and date_to < (date_from or today):
        return {"error": "join_waitlist: date_to is before date_from (or in the past)"}
    with database.tenant_scope(clinic_id) as session:
        joined = store.join(
            session,
            clinic_id,
            client_id,
            service_id=service[0],
            provider_id=provider[0] if provider else None,
            windows=windows,
            date_from=date_from,
            date_to=date_to,
            conversation_id=conversation_id,
        )
    return {
        "ok": True,
        "waitlist_entry_id": joined.entry_id,
        "updated_existing": not joined.created,
        "service": service[1],
        "provider": provider[1] if provider else None,
        "windows": windows_to_json(windows),
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
        "hold_minutes": hold_minutes(policies),
        "summary": joined_text(service[1], provider[1] if provider else None, windows, hold_minutes(policies)),
    }
