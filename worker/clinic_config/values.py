"""Value parsing for clinic files: phone numbers (E.164), time zones, ``HH:MM-HH:MM`` hour ranges."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ClinicConfigError(ValueError):
    """The file is invalid or cannot be applied; the message is one line for the user."""


# ---------------------------------------------------------------------------------------------- value parsing
def parse_phone(value: str, region: str = "US") -> str:
    """Any common spelling of a phone number -> E.164, validated by libphonenumber (not a regex)."""
    raw = str(value).strip()
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"invalid phone number {raw!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/New_York)") from None
    return value


def _clock(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 21:00 as the base-60 integer 1260.
        hours, minutes = divmod(value, 60)
        value = f"{hours:02d}:{minutes:02d}"
    value = str(value).strip()
    if len(value) == 4 and value[1] == ":":
        value = "0" + value
    if not _CLOCK.match(value):
        raise ValueError(f"invalid time {value!r} (use HH:MM, 24-hour)")
    return value


def parse_ranges(value: Any) -> list[list[str]]:
    """``["09:00-13:00", "14:00-17:00"]`` or ``[["09:00", "13:00"]]`` -> sorted, non-overlapping pairs."""
    if value is None or value == "closed":
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of HH:MM-HH:MM ranges, got {value!r}")
    ranges: list[list[str]] = []
    for item in value:
        if isinstance(item, str):
            parts = item.split("-")
        elif isinstance(item, list | tuple):
            parts = list(item)
        else:
            raise ValueError(f"invalid time range {item!r}")
        if len(parts) != 2:
            raise ValueError(f"invalid time range {item!r} (use HH:MM-HH:MM)")
        start, end = _clock(parts[0]), _clock(parts[1])
        if start >= end:
            raise ValueError(f"time range {start}-{end} ends before it starts")
        ranges.append([start, end])
    ranges.sort()
    for before, after in zip(ranges, ranges[1:], strict=False):
        if after[0] < before[1]:
            raise ValueError(f"time ranges {before[0]}-{before[1]} and {after[0]}-{after[1]} overlap")
    return ranges


def parse_week(value: Any) -> dict[str, list[list[str]]]:
    """A week of opening (or working) hours; days left out are closed."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of day (mon..sun) to time ranges")
    unknown = [str(k) for k in value if str(k).lower()[:3] not in DAYS or len(str(k)) < 3]
    if unknown:
        raise ValueError(f"unknown day {unknown[0]!r} (use mon, tue, wed, thu, fri, sat, sun)")
    week: dict[str, list[list[str]]] = {day: [] for day in DAYS}
    for key, ranges in value.items():
        day = str(key).lower()[:3]
        try:
            week[day] = parse_ranges(ranges)
        except ValueError as exc:
            raise ValueError(f"{day}: {exc}") from None
    return week


def format_ranges(ranges: list[list[str]]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in ranges) or "closed"
