"""``parse_when``: what a message says about when, relative to ``now`` in the clinic's timezone (the choices are
in the package docstring).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.timeparse.words import (
    _MONTH_RE,
    _MONTHS,
    _NUM_WORD_RE,
    _WEAK_WEEKDAYS,
    _WEEKDAY_ALIASES,
    _WEEKDAY_RE,
    WEEKDAYS,
    WORD_NUMBERS,
    _normalise,
)

MORNING = (time(9), time(12))
AFTERNOON = (time(12), time(17))
EVENING = (time(17), time(21))
DAY_START = time(8)
DAY_END = time(21)


_Date = date  # aliases: WhenSpec's fields are named date and time
_Time = time


@dataclass(frozen=True)
class WhenSpec:
    """What a message says about when.

    ``date``: a single day, or the first day of a range ending ``until``
    (inclusive).  ``time``: an exact local time.  ``window``: a local time range
    [start, end).  ``ambiguous``: another reasonable reading exists; ``note``
    says which choice was made (for the policy to confirm with the patient).
    """

    date: _Date | None = None
    time: _Time | None = None
    window: tuple[_Time, _Time] | None = None
    ambiguous: bool = False
    note: str = ""
    until: _Date | None = None


class _Parser:
    def __init__(self, text: str, now: datetime, tz: str) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.local_now = now.astimezone(ZoneInfo(tz))
        self.today = self.local_now.date()
        self.text = _normalise(text)
        self.date: date | None = None
        self.until: date | None = None
        self.time: time | None = None
        self.window: tuple[time, time] | None = None
        self.weekday: int | None = None
        self.ambiguous = False
        self.notes: list[str] = []
        self.window_hint: str | None = None  # "am" or "pm" from morning/afternoon/evening

    # -- helpers
    def _take(self, pattern: str) -> re.Match[str] | None:
        match = re.search(pattern, self.text)
        if match:
            self.text = self.text[: match.start()] + " " * (match.end() - match.start()) + self.text[match.end() :]
        return match

    def _note(self, text: str, ambiguous: bool = False) -> None:
        self.notes.append(text)
        self.ambiguous = self.ambiguous or ambiguous

    def _set_date(self, value: date, until: date | None = None) -> None:
        if self.date is None:
            self.date, self.until = value, until

    # -- dates
    def _roll_year(self, month: int, day: int, year: int | None, label: str) -> None:
        if year is not None:
            if year < 100:
                year += 2000
            try:
                value = date(year, month, day)
            except ValueError:
                self._note(f"{label}: no such date", ambiguous=True)
                return
            if value < self.today:
                self._note(f"{label} is in the past", ambiguous=True)
            self._set_date(value)
            return
        for offset in range(0, 9):  # Feb 29 needs up to 8 years
            try:
                value = date(self.today.year + offset, month, day)
            except ValueError:
                continue
            if value >= self.today:
                self._set_date(value)
                return
        self._note(f"{label}: no such date", ambiguous=True)

    def parse_explicit_dates(self) -> None:
        m = self._take(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?\b")
        if m:
            month, day = int(m.group(1)), int(m.group(2))
            if 1 <= month <= 12 and 1 <= day <= 31:
                self._roll_year(month, day, int(m.group(3)) if m.group(3) else None, m.group(0))
        m = self._take(rf"\b({_MONTH_RE})\s+(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\b(?:\s+(\d{{4}}))?")
        if m is None:
            m2 = self._take(
                rf"\b(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?({_MONTH_RE})\b(?:\s+(\d{{4}}))?"
            )
            if m2:
                self._roll_year(
                    _MONTHS[m2.group(2)],
                    int(m2.group(1)),
                    int(m2.group(3)) if m2.group(3) else None,
                    m2.group(0).strip(),
                )
        else:
            self._roll_year(
                _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)) if m.group(3) else None, m.group(0).strip()
            )

    def parse_day_of_month(self) -> None:
        m = self._take(r"\b(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)\b") or self._take(
            r"\bthe\s+(\d{1,2})\b(?!\s*(?:am|pm|:|o\s?clock|ish))"
        )
        if not m:
            return
        day = int(m.group(1))
        if not 1 <= day <= 31:
            return
        year, month = self.today.year, self.today.month
        for _ in range(13):
            if day <= calendar.monthrange(year, month)[1] and date(year, month, day) >= self.today:
                self._set_date(date(year, month, day))
                return
            month += 1
            if month > 12:
                year, month = year + 1, 1

    def parse_relative(self) -> None:
        n_re = rf"(\d+|{_NUM_WORD_RE}|a|an|a couple of|a couple|couple of|a few)"
        m = self._take(rf"\bin\s+{n_re}\s+(day|days|week|weeks|month|months)\b") or self._take(
            rf"\b{n_re}\s+(day|days|week|weeks|month|months)\s+from\s+(?:now|today)\b"
        )
        if m:
            raw = m.group(1).replace(" of", "").replace("a ", "").strip()
            count = int(raw) if raw.isdigit() else WORD_NUMBERS.get(raw, 1)
            unit = m.group(2)
            if unit.startswith("day"):
                self._set_date(self.today + timedelta(days=count))
            elif unit.startswith("week"):
                self._set_date(self.today + timedelta(weeks=count))
            else:
                self._set_date(_add_months(self.today, count))
            self._note(m.group(0).strip())
        monday = self.today - timedelta(days=self.today.weekday())
        if self._take(r"\b(?:day after tomorrow|pasado manana)\b"):
            self._set_date(self.today + timedelta(days=2))
        if self._take(r"\b(?:next|la proxima|la otra) (?:week|semana)\b"):
            if not self._weekday_next_week():
                self._set_date(monday + timedelta(days=7), monday + timedelta(days=13))
                self._note("next week")
        elif self._take(r"\b(?:this|esta) (?:week|semana)\b"):
            self._set_date(self.today, monday + timedelta(days=6))
            self._note("this week")
        m = self._take(r"\b(?:(this|next|the)\s+)?(?:weekend|fin de semana)\b")
        if m:
            saturday = monday + timedelta(days=5)
            if m.group(1) == "next":
                saturday += timedelta(days=7)
                if self.today.weekday() < 5:
                    self._note(
                        f"next weekend read as {saturday.isoformat()} (the weekend of next week)", ambiguous=True
                    )
            self._set_date(max(saturday, self.today), saturday + timedelta(days=1))
        if self._take(r"\bnext month\b"):
            first = _add_months(self.today.replace(day=1), 1)
            self._set_date(first, _add_months(first, 1) - timedelta(days=1))
            self._note("next month")

    def _weekday_next_week(self) -> bool:
        """'next week' combined with a weekday ("tuesday next week")."""
        m = self._take(rf"\b(?:on\s+)?({_WEEKDAY_RE})\b")
        if not m:
            return False
        target = _WEEKDAY_ALIASES[m.group(1)]
        monday_next = self.today - timedelta(days=self.today.weekday()) + timedelta(days=7)
        self.weekday = target
        self._set_date(monday_next + timedelta(days=target))
        self._note(f"{WEEKDAYS[target].capitalize()} of next week")
        return True

    def parse_keywords(self) -> None:
        if self._take(r"\b(?:todays?|hoy)\b"):
            self._set_date(self.today)
        if self._take(r"\b(?:tonight|esta noche)\b"):
            self._set_date(self.today)
            self._set_window(EVENING, "pm")
        if re.search(r"\bthis (morning|afternoon|evening)\b", self.text):
            self._set_date(self.today)  # the window itself is read by parse_windows
        # Spanish: "manana" alone is tomorrow, "por/de la manana" is the morning.
        if re.search(r"\b(?:por|de|en) la manana\b", self.text):
            self._take(r"\b(?:por|de|en) la manana\b")
            self._set_window(MORNING, "am")
        if self._take(r"\b(?:tomorrow|manana)\b"):
            self._set_date(self.today + timedelta(days=1))

    def parse_weekday(self) -> None:
        # "not friday", "anything but monday": the day ruled out is not the day asked for.
        self._take(rf"\b(?:not|no|except|but not|anything but|other than|besides)\s+(?:on\s+)?(?:{_WEEKDAY_RE})\b")
        pattern = rf"\b(?:(next|this|coming|this coming|on|proximo|el proximo|este|el)\s+)?({_WEEKDAY_RE})\b"
        for m in re.finditer(pattern, self.text):
            qualifier, word = m.group(1), m.group(2)
            if word in _WEAK_WEEKDAYS and qualifier is None and not self._weekday_context(m):
                continue
            self._take(re.escape(m.group(0)))
            self._resolve_weekday(_WEEKDAY_ALIASES[word], qualifier, word)
            return

    def _weekday_context(self, m: re.Match[str]) -> bool:
        after = self.text[m.end() :].split()
        before = self.text[: m.start()].split()
        follows = bool(after) and (
            after[0] in {"at", "morning", "afternoon", "evening", "am", "pm", "the", "or", "and", "after", "before"}
            or after[0][:1].isdigit()
        )
        precedes = bool(before) and before[-1] in {"by", "until", "before", "after", "or", "and", "till"}
        alone = not after and not before
        return follows or precedes or alone

    def _resolve_weekday(self, target: int, qualifier: str | None, word: str) -> None:
        today_wd = self.today.weekday()
        ahead = (target - today_wd) % 7  # 0 = today
        coming = self.today + timedelta(days=ahead)
        self.weekday = target
        name = WEEKDAYS[target].capitalize()
        if self.date is not None:  # "friday the 14th": the date wins, checked in result()
            return
        if qualifier in ("next", "proximo", "el proximo"):
            monday_next = self.today - timedelta(days=today_wd) + timedelta(days=7)
            chosen = monday_next + timedelta(days=target)
            strictly_next = self.today + timedelta(days=ahead or 7)
            if strictly_next != chosen:
                self._note(
                    f"next {name} read as {chosen.isoformat()} (the {name} of next week); "
                    f"could mean {strictly_next.isoformat()}",
                    ambiguous=True,
                )
            self._set_date(chosen)
        elif qualifier in ("this", "coming", "this coming", "este"):
            self._set_date(coming)
        else:
            if ahead == 0:
                self._note(
                    f"{name} read as today; could mean {(coming + timedelta(days=7)).isoformat()}", ambiguous=True
                )
            self._set_date(coming)

    # -- times
    def _set_window(self, window: tuple[time, time], hint: str) -> None:
        if self.window is None:
            self.window = window
        self.window_hint = self.window_hint or hint

    def parse_windows(self) -> None:
        for pattern, window, hint in (
            (r"\b(?:in the |this )?morning(?:s)?\b", MORNING, "am"),
            (r"\b(?:in the |this )?afternoon(?:s)?\b|\b(?:por|en|de) la tarde\b", AFTERNOON, "pm"),
            (r"\b(?:in the |this )?evening(?:s)?\b|\bafter work\b|\b(?:por|en|de) la noche\b", EVENING, "pm"),
            (r"\blunch(?:time)?\b", (time(12), time(13, 30)), "pm"),
        ):
            if self._take(pattern):
                self._set_window(window, hint)

    def _hour(self, raw: str) -> int | None:
        return int(raw) if raw.isdigit() else WORD_NUMBERS.get(raw)

    def _to_time(self, hour: int, minute: int, suffix: str | None, explicit: bool = True) -> time | None:
        """Apply am/pm and the bare-hour heuristic.  ``explicit``: '15:00'-like."""
        if minute > 59 or hour > 23:
            return None
        if suffix:
            if hour == 0 or hour > 12:
                return None
            if suffix.startswith("p"):
                return time(hour % 12 + 12, minute)
            return time(hour % 12, minute)
        if hour >= 13 or (hour == 0 and explicit):
            return time(hour, minute)
        if self.window_hint == "am":
            return time(hour % 12, minute)
        if self.window_hint == "pm":
            return time(hour % 12 + 12, minute)
        if hour == 12:
            return time(12, minute)
        if 1 <= hour <= 7:
            return time(hour + 12, minute)
        if hour == 8:
            self._note("8 without am/pm read as 8am", ambiguous=True)
            return time(8, minute)
        if 9 <= hour <= 11:
            return time(hour, minute)
        return None

    def parse_times(self) -> None:
        num = rf"(\d{{1,2}}|{_NUM_WORD_RE})"
        point = rf"{num}(?::(\d{{2}}))?\s*(am|pm)?"
        m = (
            self._take(rf"\bbetween\s+{point}\s+(?:and|to)\s+{point}\b")
            or self._take(rf"\bfrom\s+{point}\s+(?:to|til|till|until)\s+{point}\b")
            or self._take(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)?\s+to\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b")
        )
        if m and self._apply_range(m.groups()):
            return
        m = self._take(r"\b(before|after|by)\s+(?:noon|midday)\b")
        if m:
            self._apply_time(m.group(1), time(12))
            return
        if self._take(r"\b(?:12 noon|noon|midday|mediodia)\b"):
            self.time = time(12)
            return
        qualifier = r"(before|by|after|around|at|about|a las|las|a la)"
        m = self._take(rf"\b{qualifier}?\s*(\d{{1,2}})[:.](\d{{2}})\s*(am|pm)?\b")
        if m:
            self._apply_time(m.group(1), self._to_time(int(m.group(2)), int(m.group(3)), m.group(4), explicit=True))
            return
        m = self._take(rf"\b{qualifier}?\s*(\d{{1,2}})\s*(am|pm)\b")
        if m:
            self._apply_time(m.group(1), self._to_time(int(m.group(2)), 0, m.group(3)))
            return
        m = self._take(rf"\b{qualifier}\s+{num}(?:\s*(?:ish|o ?clock))?\b") or self._take(
            r"\b()(\d{1,2})\s*(?:ish|o ?clock)\b"
        )
        if m:
            hour = self._hour(m.group(2))
            if hour is not None:
                self._apply_time(m.group(1) or None, self._to_time(hour, 0, None, explicit=False))

    def _apply_range(self, g: tuple[str | None, ...]) -> bool:
        start_hour, end_hour = self._hour(g[0] or ""), self._hour(g[3] or "")
        if start_hour is None or end_hour is None:
            return False
        start_suffix, end_suffix = g[2], g[5]
        if start_suffix is None and end_suffix is not None and start_hour < end_hour and end_hour != 12:
            start_suffix = end_suffix  # "2 to 4pm": both pm
        t0 = self._to_time(start_hour, int(g[1] or 0), start_suffix, explicit=False)
        t1 = self._to_time(end_hour, int(g[4] or 0), end_suffix, explicit=False)
        if t0 is None or t1 is None or t0 >= t1:
            return False
        self.window = (t0, t1)
        return True

    def _apply_time(self, qualifier: str | None, value: time | None) -> None:
        if value is None:
            return
        if qualifier in ("before", "by"):
            self.window = (DAY_START, value) if value > DAY_START else None
            self.time = None if self.window else self.time
        elif qualifier == "after":
            self.window = (value, DAY_END) if value < DAY_END else None
            self.time = None if self.window else self.time
        else:
            if qualifier in ("around", "about"):
                self._note(f"around {value.strftime('%H:%M')}")
            self.time = value

    def result(self) -> WhenSpec | None:
        if self.date is not None and self.weekday is not None and self.date.weekday() != self.weekday:
            self._note(f"{self.date.isoformat()} is not a {WEEKDAYS[self.weekday].capitalize()}", ambiguous=True)
        if self.date == self.today and self.time is not None and self.time < self.local_now.time().replace(tzinfo=None):
            self._note("that time has already passed today", ambiguous=True)
        if self.date is None and self.time is None and self.window is None:
            return None
        return WhenSpec(
            date=self.date,
            time=self.time,
            window=self.window,
            ambiguous=self.ambiguous,
            note="; ".join(self.notes),
            until=self.until,
        )


def _add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def parse_when(text: str, now: datetime, tz: str) -> WhenSpec | None:
    """Parse a date and/or time from free text, relative to ``now`` in ``tz``.

    Returns None when the text says nothing about when.
    """
    parser = _Parser(text, now, tz)
    parser.parse_explicit_dates()
    parser.parse_day_of_month()
    parser.parse_relative()
    parser.parse_keywords()
    parser.parse_weekday()
    parser.parse_windows()
    parser.parse_times()
    return parser.result()


def combine_local(day: date, at: time, tz: str) -> datetime:
    """An aware datetime for a local wall-clock time (first occurrence on DST fall-back)."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(tz))
