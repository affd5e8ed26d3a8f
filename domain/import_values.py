"""Reading the cells of a staff-supplied CSV: headers to fields, dates, times, phone numbers, emails, names,
tags, yes/no answers.  Pure (no I/O); shared by the client-list and past-visit imports
(``domain.client_import``, ``domain.visit_import``).

Why so strict about phone numbers: a number is who we text.  Each one is normalised to E.164 with
``phonenumbers`` or refused with the reason (too short, unknown country code, not a valid number...): no digit
is added or dropped and no country assumed beyond the clinic's region for numbers written without one, and a
number a spreadsheet mangled (``4.15E+09``) is reported, not repaired.  A number ``phonenumbers`` knows cannot
take texts (a landline, an extension, a toll-free line) is accepted but flagged ``not_mobile``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import phonenumbers

IGNORE = "ignore"  # the field of a column that feeds nothing


def spellings(text: str) -> tuple[str, ...]:
    """Header spellings written as one '|'-separated string (normalised: lower case, words only)."""
    return tuple(s.strip() for s in text.split("|") if s.strip())


# Words around a header that say nothing about the field ("Client Mobile #", "Patient Email Address").
_HEADER_NOISE = ("client ", "customer ", "patient ", "contact ", "primary ")
_HEADER_SUFFIXES = (" number", " no", " address", " 1")

_YES_WORDS = frozenset({"yes", "y", "true", "t", "1", "x", "subscribed", "granted", "agreed", "consented", "on"})
_NO_WORDS = frozenset({"no", "n", "false", "f", "0", "unsubscribed", "revoked", "declined", "refused", "off", "stop"})
_YES_PHRASES = frozenset({"opted in", "optedin", "opt in", "optin"})
_NO_PHRASES = frozenset({"opted out", "optedout", "opt out", "optout", "do not text", "dnt"})
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "md", "rn", "np", "pa", "dds", "phd"})


class ImportFileError(ValueError):
    """A problem with the file as a whole, or with how staff asked to read it (one sentence)."""


@dataclass(frozen=True)
class Rejected:
    """A row that is not imported: ``reason`` is the short category counted in the report, ``detail`` the rest."""

    row: int
    reason: str
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


# ---------------------------------------------------------------- header mapping
def normalise_header(header: str) -> str:
    text = unicodedata.normalize("NFKD", header.replace("\ufeff", "")).lower()
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _field_for(header: str, fields: Mapping[str, Sequence[str]]) -> tuple[str, int] | None:
    """The field a header names and the rank of its spelling among the field's (lower: preferred)."""
    wanted = normalise_header(header)
    candidates = [wanted]
    for prefix in _HEADER_NOISE:
        if wanted.startswith(prefix) and wanted[len(prefix) :] != "id":  # "Client ID" is not the row's id
            candidates.append(wanted[len(prefix) :])
    for cand in list(candidates):
        for suffix in _HEADER_SUFFIXES:
            if cand.endswith(suffix):
                candidates.append(cand[: -len(suffix)])
    for cand in candidates:
        for name, known in fields.items():
            if cand in known:
                return name, known.index(cand)
    return None


@dataclass(frozen=True)
class ColumnMapping:
    """Which field each column of the file feeds (``IGNORE``: none).  Several phone columns may feed ``phone``:
    the first non-blank one in order of preference (Mobile before Phone before Home Phone) is the number."""

    headers: tuple[str, ...]
    fields: tuple[str, ...]  # per column
    phone_order: tuple[int, ...] = ()

    def columns(self, name: str) -> list[int]:
        if name == "phone" and self.phone_order:
            return list(self.phone_order)
        return [i for i, f in enumerate(self.fields) if f == name]

    def value(self, cells: Sequence[str], name: str) -> str:
        for i in self.columns(name):
            if i < len(cells) and cells[i].strip():
                return cells[i].strip()
        return ""

    def mapped(self) -> set[str]:
        return {f for f in self.fields if f != IGNORE}

    def describe(self) -> list[tuple[str, str]]:
        return [(h or f"(column {i + 1})", f) for i, (h, f) in enumerate(zip(self.headers, self.fields, strict=True))]


def parse_overrides(pairs: Iterable[str], known: Iterable[str]) -> dict[str, str]:
    """``--map "Column=field"`` (field ``ignore`` drops a column) -> {normalised header: field}."""
    known_fields = set(known) | {IGNORE}
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, name = pair.rpartition("=")
        name = name.strip().lower().replace("-", "_").replace(" ", "_")
        if not sep or not column.strip():
            raise ImportFileError(f"--map takes COLUMN=FIELD, got {pair!r}")
        if name not in known_fields:
            raise ImportFileError(f"--map {pair!r}: unknown field {name!r}; fields: {', '.join(sorted(known_fields))}")
        out[normalise_header(column)] = name
    return out


def map_headers(
    headers: Sequence[str], fields: Mapping[str, Sequence[str]], overrides: Mapping[str, str] | None = None
) -> ColumnMapping:
    """Each column's field by its header (``overrides`` first).  A second column claiming a field already taken
    is ignored (two "Email" columns: the first counts), except phone columns, which become fallbacks."""
    overrides = dict(overrides or {})
    normalised = [normalise_header(h) for h in headers]
    unknown = sorted(set(overrides) - set(normalised))
    if unknown:
        raise ImportFileError(f"--map names no column of the file: {', '.join(unknown)}")
    found = [_field_for(header, fields) for header in headers]
    chosen = [overrides.get(norm) or (hit[0] if hit else IGNORE) for norm, hit in zip(normalised, found, strict=True)]
    seen: set[str] = set()
    for i, name in enumerate(chosen):
        if name in (IGNORE, "phone"):
            continue
        if name in seen and normalised[i] not in overrides:
            chosen[i] = IGNORE
        seen.add(name)

    def rank(i: int) -> int:
        hit = found[i]
        return hit[1] if hit and hit[0] == "phone" and normalised[i] not in overrides else -1

    phone_order = tuple(sorted((i for i, name in enumerate(chosen) if name == "phone"), key=rank))
    return ColumnMapping(tuple(headers), tuple(chosen), phone_order)


# ---------------------------------------------------------------- cell values
def parse_yes_no(value: str) -> bool | None:
    """A consent cell: True / False / None (blank or unknown words count as nothing said)."""
    if value.strip() in ("✓", "✔", "☑"):
        return True
    text = " ".join(re.sub(r"[^a-z0-9 ]+", " ", value.strip().lower()).split())
    if not text:
        return None
    if text in _YES_WORDS or text in _YES_PHRASES:
        return True
    if text in _NO_WORDS or text in _NO_PHRASES:
        return False
    return None


_MONTH_NAMES = spellings(
    "jan january|feb february|mar march|apr april|may|jun june|jul july|aug august|sep sept september|"
    "oct october|nov november|dec december"
)
_MONTHS = {name: number for number, names in enumerate(_MONTH_NAMES, start=1) for name in names.split()}
_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T ])")
_NUMERIC = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})(?:$|[T ,])")


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year <= 30 else 1900  # two-digit years: 1931-2030
    return year


def infer_day_first(values: Iterable[str]) -> bool | None:
    """Whether the file writes dates day-first (31/01/2024): True when some date only reads day-first and none
    only month-first, False for the opposite, None when nothing tells (or the file contradicts itself)."""
    day_first = month_first = False
    for value in values:
        match = _NUMERIC.match(value.strip())
        if match:
            a, b = int(match.group(1)), int(match.group(2))
            day_first |= a > 12 >= b
            month_first |= b > 12 >= a
    if day_first == month_first:
        return None
    return day_first


def parse_date(value: str, *, day_first: bool = False) -> date:
    """A date as spreadsheets and booking systems write it (2024-03-05, 3/5/2024, 05.03.24, Mar 5 2024,
    5-Mar-2024); a time after it is ignored.  ``day_first``: 3/5/2024 is 3 May (dotted dates always are).
    ValueError with a short reason otherwise."""
    text = value.strip()
    try:
        if match := _ISO.match(text):
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if match := _NUMERIC.match(text):
            a, b = int(match.group(1)), int(match.group(2))
            dotted = "." in text[: match.end()]  # 05.03.2024 is day-first wherever it is written
            day, month = (a, b) if day_first or dotted else (b, a)
            return date(_year(match.group(3)), month, day)
        words = re.findall(r"[a-z]+|\d+", text.lower())
        months = [w for w in words if w in _MONTHS]
        numbers = [w for w in words if w.isdigit()]
        if len(months) >= 1 and len(numbers) >= 2:
            years = [n for n in numbers if len(n) == 4]
            year_text = years[0] if years else numbers[1]
            day_text = next(n for n in numbers if n != year_text or numbers.count(n) > 1)
            return date(_year(year_text), _MONTHS[months[0]], int(day_text))
    except ValueError:
        raise ValueError(f"no such date: {value!r}") from None
    raise ValueError(f"not a date: {value!r}")


def parse_time(value: str) -> time:
    """14:30, 2:30 PM, 2pm, 14:30:00, 0930."""
    text = value.strip().lower().replace(".", "")
    match = re.fullmatch(r"(\d{1,2})(?::?(\d{2}))?(?::(\d{2}))?\s*(am|pm|a|p)?", text)
    if not match:
        raise ValueError(f"not a time: {value!r}")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    suffix = match.group(4)
    if suffix:
        if not 1 <= hour <= 12:
            raise ValueError(f"not a time: {value!r}")
        hour = hour % 12 + (12 if suffix.startswith("p") else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"not a time: {value!r}")
    return time(hour, minute)


def parse_moment(value: str, tz: str, *, day_first: bool = False) -> datetime:
    """A date with an optional time (clinic-local unless it carries an offset or Z) -> an aware datetime."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        pass
    day = parse_date(text, day_first=day_first)
    clock = re.search(r"(\d{1,2}:\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?)\s*$", text, re.IGNORECASE)
    at = parse_time(clock.group(1)) if clock else time(0)
    return datetime.combine(day, at, ZoneInfo(tz))


# ---------------------------------------------------------------- phone numbers
@dataclass(frozen=True)
class PhoneCheck:
    e164: str | None  # None: blank or invalid (then ``error`` says why)
    error: str | None = None
    not_mobile: bool = False  # phonenumbers knows it cannot take texts (landline, extension, toll free, ...)
    kind: str = ""


_NOT_MOBILE = {
    phonenumbers.PhoneNumberType.FIXED_LINE: "landline",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll-free number",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium-rate number",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared-cost number",
    phonenumbers.PhoneNumberType.PAGER: "pager",
    phonenumbers.PhoneNumberType.UAN: "company number",
    phonenumbers.PhoneNumberType.VOICEMAIL: "voicemail number",
}
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
_POSSIBLE_ERRORS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong number of digits",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "no area code",
}
_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)


def normalise_phone(raw: str, region: str) -> PhoneCheck:
    """E.164 for a phone cell, or why not.  ``region``: where numbers written without +country are (ISO code)."""
    text = raw.strip().lstrip("'")
    if not text:
        return PhoneCheck(None)
    if re.fullmatch(r"\d+(?:\.\d+)?[eE]\+?\d+", text):
        return PhoneCheck(None, "digits lost in a spreadsheet (scientific notation)")
    if re.fullmatch(r"\d{7,15}\.0", text):  # a spreadsheet's number cell: the digits are all there
        text = text[:-2]
    if re.search(r"[a-z]", _EXTENSION.sub("", text), re.IGNORECASE):
        return PhoneCheck(None, "letters in the number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return PhoneCheck(None, _PARSE_ERRORS.get(exc.error_type, "not a phone number"))
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        return PhoneCheck(None, _POSSIBLE_ERRORS.get(possible, "not a possible number"))
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region
        return PhoneCheck(None, f"not a valid number in {where}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if number.extension:
        return PhoneCheck(e164, None, True, "number with an extension")
    kind = _NOT_MOBILE.get(phonenumbers.number_type(number))
    return PhoneCheck(e164, None, kind is not None, kind or "")


_EMAIL = re.compile(r"^[^@\s,;<>()]+@[^@\s,;<>()]+\.[a-z]{2,}$", re.IGNORECASE)


def normalise_email(raw: str) -> str | None:
    """Lower-cased address, None when blank; ValueError when it is not one address."""
    text = raw.strip().strip("<>").lower()
    if not text:
        return None
    if not _EMAIL.match(text) or len(text) > 320:
        raise ValueError("not an email address")
    return text


def clean_name(first: str, last: str, full: str) -> str | None:
    """First + last, else the full name ("Smith, Jane" read as Jane Smith); whitespace collapsed, at most 200."""
    if first or last:
        name = f"{first} {last}"
    else:
        parts = [p.strip() for p in full.split(",")]
        flip = len(parts) == 2 and all(parts) and parts[1].lower().strip(".") not in _NAME_SUFFIXES
        name = f"{parts[1]} {parts[0]}" if flip and not re.search(r"\d", full) else full
    name = " ".join(name.split())
    return name[:200] or None


def clean_tags(*values: str) -> tuple[str, ...]:
    """Tags as campaign filters compare them: lower case, single spaces, in first-seen order."""
    out: list[str] = []
    for value in values:
        for tag in re.split(r"[,;|]", value):
            tag = " ".join(tag.lower().split())[:64]
            if tag and tag not in out:
                out.append(tag)
    return tuple(out)
