"""What the offline policy says and asks about the waitlist and the preferred provider (issue 16).

Kept apart from ``offline_policy.py`` (already long): recognising "put me on the waitlist", turning what the
patient asked for into ``join_waitlist`` arguments, and the sentences around it.  Pure.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any

from domain.timeparse import WhenSpec

_WAITLIST = re.compile(r"\b(wait ?list(ed)?|waiting list|lista de espera)\b")
_LEAVE = re.compile(r"\b(off|remove|leave|out of|no longer|dont need|quit|take me out)\b")
_HOW = re.compile(r"^(how|what|whats|is|does|do|when|am|are|im|i am)\b.*\?|\bhow does\b|\bhow do\b|\bhow long\b")
# A request to be added ("WAITLIST" as the offer said, "put me on the wait list", "yes please, add me").
_JOIN = re.compile(
    r"^(yes |yeah |yep |sure |ok |okay |please )*(the )?(wait ?list|waiting list)( please| pls)?$"
    r"|\b(put|add|get|sign|signs?) (me|us)\b|\bjoin\b|\bsign up\b|\b(i d|id|i would|i ll|ill) (like|love|take|do)\b"
    r"|\b(yes|yeah|yep|sure|ok|okay|please)\b"
)

# Added to "nothing fits" replies: the patient can ask for the waitlist instead.
OFFER = "Or reply WAITLIST and I'll text you if a time opens up."
EXPLAIN = (
    "If a time opens up (say, a cancellation), people on the waitlist get a text in the order they joined, and the "
    "first to reply YES within the hold gets it. Want me to add you? Reply WAITLIST."
)


def asks_to_join(norm: str) -> bool:
    """'waitlist', 'put me on the wait list please', 'yes add me to the waitlist'."""
    return (
        bool(_WAITLIST.search(norm) and _JOIN.search(norm.strip())) and not asks_to_leave(norm) and not asks_how(norm)
    )


def asks_to_leave(norm: str) -> bool:
    return bool(_WAITLIST.search(norm) and _LEAVE.search(norm))


def asks_how(norm: str) -> bool:
    return bool(_WAITLIST.search(norm) and _HOW.search(norm))


def join_arguments(service: str, when: WhenSpec | None) -> dict[str, Any]:
    """``join_waitlist`` arguments for what the patient asked for: the day (or range) and the part of the day or
    the hour around the time they named; nothing said = any time."""
    args: dict[str, Any] = {
        "service": service,
        "provider": None,
        "days": None,
        "time_of_day": None,
        "earliest": None,
        "latest": None,
        "date_from": None,
        "date_to": None,
    }
    if when is None:
        return args
    if when.date is not None:
        args["date_from"] = when.date.isoformat()
        args["date_to"] = (when.until or when.date).isoformat()
    if when.time is not None:
        moment = datetime.combine(datetime(2000, 1, 1).date(), when.time)
        args["earliest"] = max(moment - timedelta(hours=1), moment.replace(hour=0, minute=0)).strftime("%H:%M")
        latest = min(moment + timedelta(hours=1), moment.replace(hour=23, minute=59))
        args["latest"] = latest.strftime("%H:%M")
    elif when.window is not None:
        lo, hi = when.window
        args["earliest"] = lo.strftime("%H:%M")
        args["latest"] = (hi if hi > lo else time(23, 59)).strftime("%H:%M")
    return args


def joined_reply(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"Sorry, I couldn't add you to the waitlist ({result['error']}). Want me to ask our team?"
    return str(result.get("summary") or "You're on the waitlist. We'll text you when a time opens up.")


def preferred_note(result: dict[str, Any], slots: list[dict[str, Any]]) -> str:
    """' (Jordan Lee first, who you saw last time)' when the offered times start with the preferred provider."""
    preferred = result.get("preferred_provider")
    if not preferred or not slots or slots[0].get("provider") != preferred:
        return ""
    return f" ({preferred} first, who you saw last time)"
