"""The agent's tools against the real database, payments and calendar, bound to one conversation.

One module per idea, each tool a function ``(ToolContext, args) -> dict`` over the appointment service
(``worker/appointments``):

- ``context.py``: what a call is bound to (clinic, patient, conversation, fencing version, clock, ports).
- ``catalogue.py``: the menu, a treatment's details, the knowledge base.
- ``booking.py``: availability and booking.  ``proposals.py``: ``propose_action`` (no side effects).
- ``my_appointments.py``: the patient's appointments and the deposit link.
- ``changes.py``: reschedule and cancel.  ``handoff.py``: profile and handoff to staff.
- ``registry.py``: the tools by name and ``DbToolExecutor`` (dispatch; errors become results).
"""

from __future__ import annotations

from worker.tools.context import ToolContext, ToolError
from worker.tools.registry import TOOLS, DbToolExecutor

__all__ = ["TOOLS", "DbToolExecutor", "ToolContext", "ToolError"]
