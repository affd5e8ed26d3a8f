"""``parse_shift``: a time said relative to one already in the conversation ("an hour earlier", "same time")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.timeparse.words import _normalise


# ---------------------------------------------------------------------------------------------- relative shifts
@dataclass(frozen=True)
class Shift:
    """A time said relative to one already in the conversation (a proposal, an appointment being moved, the day
    being discussed): "one day later", "an hour earlier", "the following week", "same time", "later that day".

    ``days``/``minutes``: the offset; ``same_time``: keep the anchor's time; ``same_day``: keep the anchor's
    day; ``later``/``earlier``: after / before the anchor's time, no amount given.
    """

    days: int = 0
    minutes: int = 0
    same_time: bool = False
    same_day: bool = False
    later: bool = False
    earlier: bool = False

    @property
    def exact(self) -> bool:
        """The shift names an exact time (an amount of minutes, or the same time on another day)."""
        return bool(self.minutes) or self.same_time


_AMOUNT = r"(\d+|a|an|one|two|three|four|five|six|half an?|a half|couple of|a couple of|few|a few)"
_UNIT = r"(day|days|week|weeks|wk|wks|hour|hours|hr|hrs|min|mins|minute|minutes)"


def _amount(raw: str | None) -> float:
    if not raw:
        return 1
    raw = raw.strip()
    if raw.startswith("half") or raw == "a half":
        return 0.5
    if raw.isdigit():
        return int(raw)
    return {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}.get(
        raw.replace("a couple of", "couple of"), 2 if "couple" in raw else 3
    )


def _offset(amount: float, unit: str) -> tuple[int, int]:
    if unit.startswith("d"):
        return int(amount), 0
    if unit.startswith("w"):
        return int(amount * 7), 0
    if unit.startswith("h"):
        return 0, int(amount * 60)
    return 0, int(amount)


def parse_shift(text: str) -> Shift | None:
    """A relative time in ``text`` (see ``Shift``), or None."""
    t = _normalise(text)
    days = minutes = 0
    found = False
    m = re.search(rf"\b(?:{_AMOUNT}\s+)?{_UNIT}\s+(later|earlier|after|before|sooner|back|forward)\b", t)
    if m and not re.search(r"\bday after tomorrow\b|\bbefore (?:it|my|the)\b", t):
        sign = 1 if m.group(3) in ("later", "after", "back") else -1
        d, mins = _offset(_amount(m.group(1)), m.group(2))
        days, minutes, found = sign * d, sign * mins, True
    m = re.search(rf"\bpush(?:ed)? (?:it |my \w+ |that |the \w+ )?back (?:by )?{_AMOUNT}?\s*{_UNIT}\b", t)
    if m:
        d, mins = _offset(_amount(m.group(1)), m.group(2))
        days, minutes, found = d, mins, True
    m = re.search(
        rf"\b(?:bring|move|pull)(?: it| my \w+| that| the \w+)? (?:forward|up|earlier) (?:by )?{_AMOUNT}?\s*{_UNIT}\b",
        t,
    )
    if m:
        d, mins = _offset(_amount(m.group(1)), m.group(2))
        days, minutes, found = -d, -mins, True
    if not found:
        if re.search(r"\b(?:the )?(?:next|following) day\b|\b(?:the )?day after\b(?! tomorrow)", t):
            days, found = 1, True
        elif re.search(r"\b(?:the )?(?:day before|previous day)\b", t):
            days, found = -1, True
        elif re.search(
            r"\b(?:the )?(?:following|next) week\b(?=.*\bsame\b)|\bthe following week\b|\bthe week after\b"
            r"|\ba week later\b|\bsame time next week\b",
            t,
        ):
            days, found = 7, True
    same_time = bool(re.search(r"\bsame (?:time|hour)\b|\bmisma hora\b", t))
    same_day = bool(re.search(r"\b(?:that|the same|same) day\b|\bmismo dia\b", t))
    later = bool(same_day and re.search(r"\blater\b|\bafter\b", t))
    earlier = bool(same_day and re.search(r"\bearlier\b|\bbefore\b", t))
    if not (found or same_time or same_day):
        return None
    return Shift(days=days, minutes=minutes, same_time=same_time, same_day=same_day, later=later, earlier=earlier)
