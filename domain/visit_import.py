"""Past-visit import rules: a booking system's export of appointments becomes the clinic's visit history (last
visit, services had, spend), matched to clients, services and providers.  Plain data in, plain data out
(``scripts/visit_import.py`` reads the file and writes the rows).

Decisions, and why:
- **Only what happened, only in the past.**  A visit is completed, a no-show or a cancellation; a status that
  says nothing about what happened (booked, confirmed, pending) is reported, not guessed (``--map-status
  confirmed=completed`` when staff know better).  A visit in the future is refused: that is a booking.
- **Imported visits are history, not live visits**: they carry ``imported_at``, so the automations that follow a
  visit (aftercare, review request, no-show follow-up) never fire for them, however recent the date.
- **Matching**: clients by phone number, then email (never by name alone: two Jane Smiths are common); services
  by slug, name or synonym, then the catalogue's fuzzy matcher (``domain.catalog``: "Botox - 20 units" is
  Botox), and an unknown service is reported with its count (``--map-service "Old name=slug"``, or ``=none``
  to keep the visit without a service); providers by slug or name, titles ignored ("Dr. Maya Chen").
- **Money**: the amount charged is kept in cents (``$1,234.50``, ``1.234,50``, ``USD 95``); a refund (negative)
  or unreadable amount is left out with a warning — the visit still counts for last-visit segments, and spend
  falls back to the service's list price.
- **Idempotent**: each visit has a key (the booking system's appointment id, else a hash of client, start,
  service and provider), so re-importing the same file changes nothing; a corrected re-export updates the
  visits it imported before, never a live appointment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from domain.catalog import ServiceRef, match_service
from domain.client_import import CLIENT_FIELDS
from domain.import_values import (
    ColumnMapping,
    ImportFileError,
    Rejected,
    clean_name,
    normalise_email,
    normalise_header,
    normalise_phone,
    parse_date,
    parse_moment,
    parse_time,
    spellings,
)

VISIT_FIELDS: dict[str, tuple[str, ...]] = {
    "external_id": spellings(
        "appointment id|booking id|visit id|appt id|id|reference|ref|booking reference|confirmation number"
    ),
    "first_name": CLIENT_FIELDS["first_name"],
    "last_name": CLIENT_FIELDS["last_name"],
    "name": CLIENT_FIELDS["name"],
    "phone": CLIENT_FIELDS["phone"],
    "email": CLIENT_FIELDS["email"],
    "service": spellings(
        "service|service name|services|treatment|treatment name|item|appointment type|service type|procedure|"
        "service title|service description"
    ),
    "provider": spellings(
        "provider|staff|staff member|staff name|employee|practitioner|therapist|injector|team member|"
        "provider name|with|clinician|resource"
    ),
    "start": spellings(
        "start|starts at|start date time|start datetime|appointment start|date time|datetime|appointment date time|"
        "scheduled|scheduled at|start time date"
    ),
    "date": spellings("date|appointment date|visit date|start date|service date|day"),
    "time": spellings("time|start time|appointment time|visit time"),
    "duration": spellings("duration|length|duration min|duration mins|duration minutes|minutes|mins|length min"),
    "amount": spellings(
        "amount|price|total|amount paid|paid|charged|amount charged|revenue|sale total|net sales|total paid|"
        "total price|grand total|sales|collected|payment|total amount"
    ),
    "status": spellings("status|appointment status|state|visit status|outcome"),
    "notes": spellings("notes|note|comments|appointment notes|visit notes"),
}
DATE_FIELDS = ("start", "date")

STATUSES = ("completed", "no_show", "cancelled")
_STATUS_WORDS: dict[str, tuple[str, ...]] = {
    "completed": spellings(
        "completed|complete|checked out|checkout|paid|arrived|attended|show|showed|done|closed|finished|"
        "fulfilled|served|visited|checked in"
    ),
    "no_show": spellings("no show|noshow|no showed|missed|did not show|didnt show|dns|absent"),
    "cancelled": spellings(
        "cancelled|canceled|cancel|late cancel|late cancellation|late cancelled|late canceled|"
        "cancelled by client|canceled by client|cancelled by staff|canceled by staff|client cancelled"
    ),
}
# Statuses that say nothing about what happened: reported, never guessed.
_UNDECIDED = spellings("booked|confirmed|scheduled|pending|unconfirmed|requested|reserved|tentative|rescheduled")
_TITLES = frozenset({"dr", "doctor", "np", "rn", "pa", "pac", "md", "do", "lpn", "aprn", "fnp", "msn", "bsn", "ms"})
MAX_AMOUNT_CENTS = 100_000_00  # $100,000: more than any one visit; a bigger figure is a column mix-up


def parse_status(value: str, overrides: Mapping[str, str]) -> str:
    """completed | no_show | cancelled; ValueError with the reason otherwise."""
    text = normalise_header(value)
    if text in overrides:
        return overrides[text]
    for status, words in _STATUS_WORDS.items():
        if text in words:
            return status
    if not text:
        raise ValueError("blank status")
    if text in _UNDECIDED:
        raise ValueError(f"status {value.strip()!r} does not say what happened (--map-status)")
    raise ValueError(f"unknown status {value.strip()!r} (--map-status)")


def parse_status_overrides(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        raw, sep, status = pair.rpartition("=")
        status = status.strip().lower().replace("-", "_").replace(" ", "_")
        if not sep or not raw.strip() or status not in STATUSES:
            raise ImportFileError(f"--map-status takes STATUS=one of {', '.join(STATUSES)}, got {pair!r}")
        out[normalise_header(raw)] = status
    return out


def parse_amount(value: str) -> int | None:
    """Cents, None when blank; ValueError for a negative or unreadable amount."""
    text = re.sub(r"(?i)usd|us\$|eur|gbp|cad|aud|[$€£\s]", "", value.strip())
    if not text or text in ("-", "—"):
        return None
    if text.startswith("(") and text.endswith(")") or text.startswith("-"):
        raise ValueError("negative amount (a refund?)")
    if re.fullmatch(r"\d{1,3}(\.\d{3})+,\d{1,2}|\d+,\d{1,2}", text):  # 1.234,50 / 95,00
        text = text.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", text):  # 1,234.50
        text = text.replace(",", "")
    try:
        cents = int((Decimal(text) * 100).quantize(Decimal(1)))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value.strip()!r}") from None
    if cents > MAX_AMOUNT_CENTS:
        raise ValueError(f"implausible amount for one visit: {value.strip()!r}")
    return cents


def parse_duration(value: str) -> int | None:
    """Minutes: 60, 60 min, 1h, 1 h 30 m, 1:30, 1.5 hours; None when blank; ValueError otherwise."""
    text = value.strip().lower()
    if not text:
        return None
    if match := re.fullmatch(r"(\d+):(\d{2})(?::00)?", text):
        minutes = int(match.group(1)) * 60 + int(match.group(2))
    elif match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:m|min|mins|minutes)?", text):
        minutes = round(float(match.group(1)))
    elif match := re.fullmatch(
        r"(?:(\d+(?:\.\d+)?)\s*(?:h|hr|hrs|hour|hours))?\s*(?:(\d+)\s*(?:m|min|mins|minutes))?", text
    ):
        minutes = round(float(match.group(1) or 0) * 60) + int(match.group(2) or 0)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not 0 < minutes <= 24 * 60:
        raise ValueError(f"not a duration: {value!r}")
    return minutes


@dataclass(frozen=True)
class VisitRow:
    row: int
    key: str  # idempotency key (``appointments.source_key``)
    phone: str | None
    email: str | None
    name: str | None
    service: str  # as written in the file
    provider: str  # as written in the file
    starts_at: datetime
    duration_min: int | None
    amount_cents: int | None
    status: str
    notes: str = ""
    warnings: tuple[str, ...] = ()


def visit_key(external_id: str, who: str, starts_at: datetime, service: str, provider: str) -> str:
    """``import:visit:…``: the booking system's id when it has one, else what identifies the visit."""
    if external_id:
        return f"import:visit:id:{external_id.strip()[:160]}"
    fingerprint = "|".join(
        (who, starts_at.astimezone(ZoneInfo("UTC")).isoformat(), normalise_header(service), normalise_header(provider))
    )
    return "import:visit:" + hashlib.sha256(fingerprint.encode()).hexdigest()[:40]


def _start(get: Mapping[str, str], tz: str, day_first: bool) -> tuple[datetime, bool]:
    """When the visit started (clinic-local unless the cell carries an offset) and whether the file said the time
    (a visit without one is put at noon: its date is what segments use)."""
    if get["start"]:
        moment = parse_moment(get["start"], tz, day_first=day_first)
        has_time = bool(re.search(r"\d:\d\d", get["start"]))
        if has_time or not get["time"]:
            return moment, has_time
        return datetime.combine(moment.date(), parse_time(get["time"]), ZoneInfo(tz)), True
    day: date = parse_date(get["date"], day_first=day_first)
    clock = re.search(r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?\s*$", get["date"], re.IGNORECASE)
    if get["time"]:
        return datetime.combine(day, parse_time(get["time"]), ZoneInfo(tz)), True
    if clock:
        return datetime.combine(day, parse_time(clock.group(0)), ZoneInfo(tz)), True
    return datetime.combine(day, time(12), ZoneInfo(tz)), False


def parse_visit_row(
    cells: Sequence[str],
    mapping: ColumnMapping,
    line: int,
    *,
    region: str,
    tz: str,
    now: datetime,
    day_first: bool = False,
    status_overrides: Mapping[str, str] | None = None,
) -> VisitRow | Rejected:
    mapped = mapping.mapped()
    get = {name: (mapping.value(cells, name).lstrip("'") if name in mapped else "") for name in VISIT_FIELDS}
    warnings: list[str] = []
    phone = normalise_phone(get["phone"], region)
    if phone.error:
        return Rejected(line, "invalid phone", phone.error)
    try:
        email = normalise_email(get["email"])
    except ValueError:
        email = None
    if phone.e164 is None and email is None:
        return Rejected(line, "no phone or email to find the client by")
    if not (get["start"] or get["date"]):
        return Rejected(line, "no date")
    try:
        starts_at, _ = _start(get, tz, day_first)
    except ValueError as exc:
        return Rejected(line, "unreadable date", str(exc))
    if starts_at > now:
        return Rejected(line, "in the future", "book it instead (medspa appointments book)")
    try:
        status = parse_status(get["status"], status_overrides or {}) if "status" in mapped else "completed"
    except ValueError as exc:
        return Rejected(line, "status", str(exc))
    amount: int | None = None
    try:
        amount = parse_amount(get["amount"])
    except ValueError as exc:
        warnings.append(f"amount left out: {exc}")
    duration: int | None = None
    try:
        duration = parse_duration(get["duration"])
    except ValueError:
        warnings.append("duration unreadable (the service's length is used)")
    who = phone.e164 or email or ""
    return VisitRow(
        row=line,
        key=visit_key(get["external_id"], who, starts_at, get["service"], get["provider"]),
        phone=phone.e164,
        email=email,
        name=clean_name(get["first_name"], get["last_name"], get["name"]),
        service=" ".join(get["service"].split()),
        provider=" ".join(get["provider"].split()),
        starts_at=starts_at,
        duration_min=duration,
        amount_cents=amount,
        status=status,
        notes=get["notes"][:2000],
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------- the clinic's catalogue
@dataclass(frozen=True)
class Named:
    """A service or provider of the clinic, as matching sees it."""

    id: int
    slug: str
    name: str
    category: str = ""
    synonyms: tuple[str, ...] = ()
    duration_min: int = 60


NONE = "none"  # --map-service "Gift card=none": keep the visit, with no service


def parse_name_overrides(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``--map-service "Old name=slug"`` -> {normalised old name: slug or NONE}."""
    out: dict[str, str] = {}
    for pair in pairs:
        raw, sep, slug = pair.rpartition("=")
        if not sep or not raw.strip() or not slug.strip():
            raise ImportFileError(f"{option} takes NAME=SLUG, got {pair!r}")
        out[normalise_header(raw)] = slug.strip()
    return out


class Resolver:
    """Finds the clinic's service or provider a file's text names: an override, then slug, name or synonym, then
    (services only) the catalogue's fuzzy matcher.  ``resolve`` returns (entry or None, how) or raises
    LookupError; None means "no service" (a blank cell or an override to ``none``)."""

    def __init__(self, entries: Sequence[Named], overrides: Mapping[str, str], *, fuzzy: bool, kind: str) -> None:
        self.entries = list(entries)
        self.kind = kind
        self.fuzzy = fuzzy
        by_slug = {e.slug: e for e in self.entries}
        unknown = sorted(slug for slug in overrides.values() if slug != NONE and slug not in by_slug)
        if unknown:
            known = ", ".join(sorted(by_slug)) or "none"
            raise ImportFileError(f"no {kind} {', '.join(map(repr, unknown))} at this clinic ({kind}s: {known})")
        self.overrides = {k: (None if v == NONE else by_slug[v]) for k, v in overrides.items()}
        self.exact: dict[str, Named] = {}
        for entry in self.entries:
            for text in (entry.slug, entry.name, *entry.synonyms):
                self.exact.setdefault(self._key(text), entry)
        if kind == "provider":
            firsts: dict[str, list[Named]] = {}
            for entry in self.entries:
                words = self._key(entry.name).split()
                if len(words) > 2:  # "Maya J Chen" answers to "Maya Chen"
                    self.exact.setdefault(f"{words[0]} {words[-1]}", entry)
                if words:
                    firsts.setdefault(words[0], []).append(entry)
            for first, found in firsts.items():
                if len(found) == 1:  # "Maya", when only one provider is called Maya
                    self.exact.setdefault(first, found[0])
        self.refs = [ServiceRef(e.id, e.name, e.category, e.synonyms) for e in self.entries]

    def _key(self, text: str) -> str:
        words = normalise_header(text.replace("-", " ")).split()
        if self.kind == "provider":
            words = [w for w in words if w not in _TITLES]
        return " ".join(words)

    def resolve(self, text: str) -> tuple[Named | None, str]:
        key = normalise_header(text)
        if key in self.overrides:
            return self.overrides[key], "mapped"
        if not key:
            if self.kind == "service":
                return None, "blank"
            raise LookupError(f"no {self.kind}")
        if (entry := self.exact.get(self._key(text))) is not None:
            return entry, "exact"
        if self.fuzzy and (ref := match_service(text, self.refs)) is not None:
            return next(e for e in self.entries if e.id == ref.id), "fuzzy"
        raise LookupError(f"unknown {self.kind}")


def visit_times(row: VisitRow, service: Named | None) -> tuple[datetime, datetime]:
    """(ends_at, blocked_until): the file's duration, else the service's, else an hour; a past visit blocks no
    time beyond its end (it holds no slot: the no-overlap constraint covers live appointments only)."""
    minutes = row.duration_min or (service.duration_min if service else 60)
    end = row.starts_at + timedelta(minutes=minutes)
    return end, end
