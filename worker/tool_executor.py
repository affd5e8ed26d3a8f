"""Moved: the agent's tools live in ``worker/tools`` (one module per idea) over the appointment service in
``worker/appointments``.  This name stays for importers that have not moved yet."""

from __future__ import annotations

from domain.availability import parse_closed_dates, parse_hours
from domain.clinic import lead_time_minutes
from worker.tools import DbToolExecutor, ToolError

__all__ = ["DbToolExecutor", "ToolError", "lead_time_minutes", "parse_closed_dates", "parse_hours"]
