"""Natural date/time understanding for patient messages, in the clinic's timezone.

Why: the offline (rule-based) dialogue policy must understand "tmrw at 3",
"next fri morning" or "Dec 3 3:30pm" without a model, and the LLM path uses the
same parser to double-check what a model proposes.  Pure and deterministic:
``now`` is an argument, never read from a clock.

Choices (documented because patients are vague):
- A bare hour without am/pm: 1-7 -> pm, 8 -> am (flagged ambiguous), 9-11 -> am,
  12 -> noon.  With "morning" it is am, with "afternoon"/"evening" pm.
- "friday" on a Friday means today (ambiguous: could mean a week later).
- "this friday": the coming Friday, today included.
- "next friday": the Friday of next calendar week (weeks start Monday).  When
  the coming Friday is still in this week (today is Mon-Thu), "next friday"
  could mean either, so the result is flagged ambiguous and the note names the
  other date.  From Friday to Sunday there is only one reading.
- "the 14th": the next 14th, today included, rolling into the next month that
  has one.  "Dec 3" / "12/3" (US month/day) in the past roll to next year; an
  explicit year in the past is kept and flagged ambiguous.
- "next week" / "this week" / "(next) weekend" / "next month": ``date`` is the
  first day and ``until`` the last day of that range.
- "after 3" / "before noon" / "between 2 and 4" / "2-4pm": a ``window``.
Modules: ``when`` (``parse_when``, ``WhenSpec``, the day-part windows), ``shift`` (``parse_shift``: "an hour
earlier", "same time") and ``words`` (weekdays, months, numbers, misspellings).
"""

from __future__ import annotations

from domain.timeparse.shift import Shift, parse_shift
from domain.timeparse.when import (
    AFTERNOON,
    DAY_END,
    DAY_START,
    EVENING,
    MORNING,
    WhenSpec,
    combine_local,
    parse_when,
)
from domain.timeparse.words import WEEKDAYS

__all__ = [
    "AFTERNOON",
    "DAY_END",
    "DAY_START",
    "EVENING",
    "MORNING",
    "WEEKDAYS",
    "Shift",
    "WhenSpec",
    "combine_local",
    "parse_shift",
    "parse_when",
]
