"""The tools by name, and ``DbToolExecutor``: ``domain.conversation.ToolExecutor`` over Postgres for one
(clinic, patient, conversation, turn).

Errors come back as ``{"error": ...}`` results the model can recover from; nothing here raises into the agent
loop.  A new tool: its argument model in ``domain/tools.py``, a function ``(ctx, args) -> dict`` in the module
of its idea, and a line in ``TOOLS``.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from db.engine import Database
from domain.clinic import Clinic
from domain.conversation import AppointmentView
from domain.ports import Calendar, Embedder, Payments
from domain.tools import READ_ONLY_TOOLS, ToolArgumentError, parse_arguments
from worker.tools import booking, catalogue, changes, handoff, my_appointments, proposals, waitlist
from worker.tools.context import ToolContext, ToolError

log = logging.getLogger(__name__)

Tool = Callable[[ToolContext, Any], dict[str, Any]]

TOOLS: dict[str, Tool] = {
    "list_services": catalogue.list_services,
    "get_service_details": catalogue.get_service_details,
    "search_knowledge": catalogue.search_knowledge,
    "check_availability": booking.check_availability,
    "propose_action": proposals.propose_action,
    "book_appointment": booking.book_appointment,
    "reschedule_appointment": changes.reschedule_appointment,
    "cancel_appointment": changes.cancel_appointment,
    "get_my_appointments": my_appointments.get_my_appointments,
    "create_deposit_link": my_appointments.create_deposit_link,
    "update_profile": handoff.update_profile,
    "handoff_to_staff": handoff.handoff_to_staff,
    "join_waitlist": waitlist.join_waitlist,
}


class DbToolExecutor:
    """``domain.conversation.ToolExecutor`` over Postgres for one (clinic, patient, conversation, turn)."""

    def __init__(
        self,
        database: Database,
        *,
        clinic_id: int,
        client_id: int,
        conversation_id: int,
        fence_version: int,
        now: datetime,
        payments: Payments,
        calendar: Calendar | None,
        embedder: Embedder | None,
        public_base_url: str,
        hold_minutes: int | None = None,
        clinic: Clinic | None = None,
        upcoming: Sequence[AppointmentView] | None = None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.ctx = ToolContext(
            database=database,
            clinic_id=clinic_id,
            client_id=client_id,
            conversation_id=conversation_id,
            fence_version=fence_version,
            now=now,
            payments=payments,
            calendar=calendar,
            embedder=embedder,
            public_base_url=public_base_url,
            hold_fallback=hold_minutes,
            # The pipeline passes the clinic it already holds (cached per process): no query per tool call.
            clinic_model=clinic if clinic is not None and clinic.id == clinic_id else None,
            # The turn's snapshot of the patient's appointments: get_my_appointments answers from it (no query).
            known_upcoming=list(upcoming) if upcoming is not None else None,
        )

    @property
    def hold_minutes(self) -> int:
        return self.ctx.hold_minutes

    def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        started = _time.monotonic()
        ctx = self.ctx
        try:
            args = parse_arguments(name, arguments)
            result: dict[str, Any] = TOOLS[name](ctx, args)
        except ToolArgumentError as exc:
            result = {"error": str(exc)}
        except ToolError as exc:
            result = {"error": str(exc), **exc.extra}
        except Exception as exc:  # a tool must never crash the turn; the model gets a neutral error
            log.exception(
                "tool failed tool=%s clinic_id=%s conversation_id=%s", name, ctx.clinic_id, ctx.conversation_id
            )
            result = {"error": f"internal error in {name} ({type(exc).__name__}); try again or hand off to staff"}
        if name not in READ_ONLY_TOOLS:
            ctx.known_upcoming = None  # it may have booked, moved or cancelled: the next read asks the database
        log.info(
            "tool done tool=%s ok=%s ms=%d conversation_id=%s",
            name,
            "error" not in result,
            int((_time.monotonic() - started) * 1000),
            ctx.conversation_id,
        )
        return result
