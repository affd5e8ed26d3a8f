"""Times and slots: the search window a request asks for, and which offered slots match it."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from domain.offline_policy.vocabulary import _norm
from domain.ports import TurnContext
from domain.timeparse import DAY_START, WhenSpec


def _when_args(when: WhenSpec | None, ctx: TurnContext) -> dict[str, Any]:
    args: dict[str, Any] = {"date_from": None, "date_to": None, "time_of_day": None, "preferred_time": None}
    if when is None:
        return args
    if when.date is not None:
        args["date_from"] = when.date.isoformat()
        args["date_to"] = (when.until or when.date).isoformat()
    if when.time is not None:
        args["preferred_time"] = when.time.strftime("%H:%M")
        if when.date is None:
            today = ctx.now.astimezone(ZoneInfo(ctx.clinic_timezone)).date()
            args["date_from"] = today.isoformat()
    elif when.window is not None:
        lo, hi = when.window
        if (lo, hi) in ((time(9), time(12)), (time(12), time(17)), (time(17), time(21))):
            args["time_of_day"] = "morning" if lo.hour < 12 else ("afternoon" if lo.hour < 17 else "evening")
        elif lo >= time(12) and lo < time(15) and hi >= time(17):
            args["time_of_day"] = "afternoon"  # "after 1": a spread of afternoon slots, filtered by _within
        else:
            args["preferred_time"] = (lo if lo > DAY_START else hi).strftime("%H:%M")
    return args


def _within(when: WhenSpec | None, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slots inside the asked window ("after 1", "earlier that day"); all of them when none is inside."""
    if when is None or when.window is None or when.time is not None:
        return slots
    lo, hi = when.window
    inside = [s for s in slots if lo <= _slot_time(s) < hi]
    return inside if inside else []


def _slot_time(slot: dict[str, Any]) -> time:
    try:
        return datetime.fromisoformat(str(slot.get("start"))).time()
    except ValueError:
        return time(0)


def _slot_hour(slot: dict[str, Any]) -> int:
    return _slot_time(slot).hour


def _provider_named(norm: str, provider: str) -> bool:
    words = [w for w in _norm(provider).replace("dr.", "").split() if len(w) > 2]
    return any(re.search(rf"\b{re.escape(w)}\b", norm) for w in words)


def _slot_matches(slot: dict[str, Any], when: WhenSpec | None) -> bool:
    if when is None or (when.time is None and when.date is None):
        return False
    try:
        start = datetime.fromisoformat(str(slot.get("start")))
    except ValueError:
        return False
    if when.date is not None and start.date() != when.date:
        return False
    return not (when.time is not None and start.time().replace(second=0) != when.time)


def _requested_start(when: WhenSpec | None) -> str | None:
    if when is None or when.time is None or when.date is None:
        return None
    return f"{when.date.isoformat()}T{when.time.strftime('%H:%M')}"
