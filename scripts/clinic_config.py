"""A clinic as one declarative YAML file: the model, the diff against the
database, and the one-transaction apply.

Why a file: onboarding a clinic (and changing its menu, hours or policies)
must be reviewable and repeatable: the file is the source of truth, ``apply``
shows exactly what it will change and then writes all of it or nothing.

Design notes:
- Validation happens before any database access: time zones through
  ``zoneinfo``, phone numbers through ``phonenumbers`` (stored E.164), hours
  as ``HH:MM-HH:MM`` ranges, templates as valid ``str.format`` strings, and
  provider skills must name services in the same file.
- Providers and services missing from the file are *deactivated*, never
  deleted: appointments and history reference them.  Automations missing from
  the file are disabled.  SMS numbers missing from the file stop routing to
  the clinic (their directory rows are removed).
- The database writes go through the owner role (the app role only reads the
  tenant directory) with ``app.clinic_id`` set in the same transaction, since
  row-level security is FORCEd for clinic-owned tables.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

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
        week[str(key).lower()[:3]] = parse_ranges(ranges)
    return week


def format_ranges(ranges: list[list[str]]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in ranges) or "closed"


# ---------------------------------------------------------------------------------------------- the file model
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SmsNumber(_Strict):
    number: str
    messaging_service_sid: str | None = None


class PhoneNumbers(_Strict):
    front_desk: str = Field(description="the number patients call")
    on_call: str | None = Field(default=None, description="staff phone for urgent handoffs")
    sms: list[SmsNumber] = Field(min_length=1, description="numbers patients text (Twilio)")

    @field_validator("sms", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"number": v} if isinstance(v, str | int) else v for v in value]
        return value


class QuietHours(_Strict):
    start: str = "08:00"
    end: str = "21:00"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> str:
        return _clock(value)


class Policies(BaseModel):
    """Known policies are typed; other keys are kept as written (the agent reads them as clinic facts)."""

    model_config = ConfigDict(extra="allow")
    cancellation_window_hours: int = Field(default=24, ge=0)
    late_cancel_fee_cents: int = Field(default=0, ge=0)
    deposit_policy: str = ""
    deposit_refund_outside_window: bool = True
    deposit_hold_minutes: int = Field(default=60, ge=1)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    marketing_cap_per_week: int = Field(default=2, ge=0)
    opt_out_footer: str = "Reply STOP to opt out."
    min_lead_minutes: int = Field(default=120, ge=0)
    payment_methods: str = ""
    parking: str = ""
    review_url: str = ""


class ProviderSpec(_Strict):
    slug: str
    name: str = Field(min_length=1)
    title: str = ""
    calendar_id: str | None = None
    working_hours: dict[str, list[list[str]]] = Field(default_factory=lambda: parse_week({}))
    skills: list[str] = Field(default_factory=list, description="service slugs this provider performs")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value)

    @field_validator("working_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> dict[str, list[list[str]]]:
        return parse_week(value)


SCREENING_CONDITIONS = (
    "pregnancy",
    "breastfeeding",
    "cold_sore",
    "skin_lesion",
    "blood_thinners",
    "accutane",
    "allergy",
    "age",
)  # the same list as domain.screening.CONDITIONS (a unit test keeps them equal)


class ContraindicationSpec(_Strict):
    """One screening rule of a service: when the patient states ``condition``, the service is not offered and the
    agent tells them ``position`` (the clinic's wording) and offers the ``suggest`` services instead."""

    condition: Literal[
        "pregnancy", "breastfeeding", "cold_sore", "skin_lesion", "blood_thinners", "accutane", "allergy", "age"
    ]
    position: str = Field(min_length=1, description="the clinic's position, as told to the patient")
    suggest: list[str] = Field(default_factory=list, description="service slugs offered instead")
    min_age: int | None = Field(default=None, ge=1, le=120, description="condition age: treated from this age")
    ingredients: list[str] = Field(default_factory=list, description="condition allergy: what the treatment contains")

    @model_validator(mode="after")
    def _parameters(self) -> ContraindicationSpec:
        if self.condition == "age" and self.min_age is None:
            raise ValueError("condition age needs min_age")
        if self.condition == "allergy" and not self.ingredients:
            raise ValueError("condition allergy needs ingredients")
        self.ingredients = [i.strip().lower() for i in self.ingredients if i.strip()]
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept in services.contraindications (empty parameters left out; see domain.screening)."""
        out: dict[str, Any] = {"condition": self.condition, "position": self.position}
        if self.suggest:
            out["suggest"] = list(self.suggest)
        if self.min_age is not None:
            out["min_age"] = self.min_age
        if self.ingredients:
            out["ingredients"] = list(self.ingredients)
        return out


class ServiceSpec(_Strict):
    slug: str
    name: str = Field(min_length=1)
    category: str = Field(min_length=1)
    description: str = ""
    duration_min: int = Field(gt=0)
    buffer_min: int = Field(default=0, ge=0)
    price_cents: int = Field(ge=0)
    price_note: str = ""
    deposit_cents: int = Field(default=0, ge=0)
    prep_instructions: str = ""
    rebook_interval_days: int | None = Field(default=None, gt=0)
    synonyms: list[str] = Field(default_factory=list)
    contraindications: list[ContraindicationSpec] = Field(
        default_factory=list, description="screening rules: conditions this service is not offered with"
    )

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value)


class AutomationSpec(_Strict):
    enabled: bool = True
    template: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"template is not a valid {{placeholder}} string: {exc}") from None
        bad = [n for n in names if not re.fullmatch(r"[a-z_][a-z0-9_]*", n)]
        if bad:
            raise ValueError(f"template placeholder {{{bad[0]}}} is not a plain name")
        return value


def _check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(f"invalid slug {value!r} (lowercase letters, digits and dashes)")
    return value


class ClinicFile(_Strict):
    slug: str
    name: str = Field(min_length=1)
    timezone: str
    country: str = Field(default="US", description="region for phone numbers written without +country code")
    public_key: str | None = Field(default=None, description="web chat widget key (not a secret)")
    address: str = ""
    phone_numbers: PhoneNumbers
    business_hours: dict[str, list[list[str]]] = Field(default_factory=lambda: parse_week({}))
    holidays: list[date] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)
    chat_origins: list[str] = Field(default_factory=list)
    providers: list[ProviderSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
    automations: dict[str, AutomationSpec] = Field(default_factory=dict)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("business_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> dict[str, list[list[str]]]:
        return parse_week(value)

    @field_validator("chat_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins: list[str] = []
        for origin in value:
            parts = urlsplit(origin.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
                raise ValueError(f"invalid chat origin {origin!r} (use scheme://host[:port], no path)")
            normalised = f"{parts.scheme}://{parts.netloc}".lower()
            if normalised not in origins:
                origins.append(normalised)
        return origins

    @field_validator("automations")
    @classmethod
    def _kinds(cls, value: dict[str, AutomationSpec]) -> dict[str, AutomationSpec]:
        for kind in value:
            if not _KIND.match(kind):
                raise ValueError(f"invalid automation kind {kind!r} (lowercase letters, digits, underscores)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> ClinicFile:
        region = self.country.upper()
        numbers = self.phone_numbers
        numbers.front_desk = parse_phone(numbers.front_desk, region)
        if numbers.on_call:
            numbers.on_call = parse_phone(numbers.on_call, region)
        seen: set[str] = set()
        for sms in numbers.sms:
            sms.number = parse_phone(sms.number, region)
            if sms.number in seen:
                raise ValueError(f"SMS number {sms.number} is listed twice")
            seen.add(sms.number)
        for kind, items in (("provider", self.providers), ("service", self.services)):
            slugs = [i.slug for i in items]
            dupes = sorted({s for s in slugs if slugs.count(s) > 1})
            if dupes:
                raise ValueError(f"{kind} {dupes[0]!r} is listed twice")
        services = {s.slug for s in self.services}
        for service in self.services:
            for rule in service.contraindications:
                for suggested in rule.suggest:
                    if suggested not in services:
                        raise ValueError(
                            f"service {service.slug!r} contraindication {rule.condition} suggests unknown service "
                            f"{suggested!r}"
                        )
        for provider in self.providers:
            for skill in provider.skills:
                if skill not in services:
                    raise ValueError(f"provider {provider.slug!r} lists unknown service {skill!r} in skills")
        return self


# ---------------------------------------------------------------------------------------------- loading
def _location(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) and node[item].get("slug"):
                label = f"[{node[item]['slug']}]"
            parts.append(label)
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _first_error(exc: ValidationError, data: Any) -> str:
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif error["type"] == "missing":
        message = "required field is missing"
    where = _location(tuple(error["loc"]), data)
    return f"{where}: {message}" if where else message


def parse_clinic(data: Any, source: str = "clinic file") -> ClinicFile:
    if not isinstance(data, dict):
        raise ClinicConfigError(f"{source}: expected a YAML mapping at the top level")
    try:
        return ClinicFile.model_validate(data)
    except ValidationError as exc:
        raise ClinicConfigError(f"{source}: {_first_error(exc, data)}") from None


def load_clinic_file(path: Path) -> ClinicFile:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClinicConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ClinicConfigError(f"{path}: {problem}{where}") from None
    return parse_clinic(data, str(path))


# ---------------------------------------------------------------------------------------------- state
@dataclass
class ClinicState:
    """A clinic's configuration in a comparable, normalised form (what the file means / what the DB holds)."""

    clinic: dict[str, Any]
    sms_numbers: dict[str, str | None]
    providers: dict[str, dict[str, Any]]
    services: dict[str, dict[str, Any]]
    automations: dict[str, dict[str, Any]]
    clinic_id: int | None = None
    inactive_providers: set[str] = field(default_factory=set)
    inactive_services: set[str] = field(default_factory=set)

    @property
    def slug(self) -> str:
        return str(self.clinic["slug"])


CLINIC_FIELDS = (
    "name",
    "timezone",
    "public_key",
    "phone",
    "oncall_phone",
    "address",
    "business_hours",
    "holidays",
    "policies",
    "chat_origins",
)
PROVIDER_FIELDS = ("name", "title", "calendar_id", "working_hours", "skills")
SERVICE_FIELDS = (
    "name",
    "category",
    "description",
    "duration_min",
    "buffer_min",
    "price_cents",
    "price_note",
    "deposit_cents",
    "prep_instructions",
    "rebook_interval_days",
    "synonyms",
    "contraindications",
)
JSON_SERVICE_FIELDS = frozenset({"contraindications"})
AUTOMATION_FIELDS = ("enabled", "template", "settings")


def desired_state(spec: ClinicFile) -> ClinicState:
    clinic = {
        "slug": spec.slug,
        "name": spec.name,
        "timezone": spec.timezone,
        "public_key": spec.public_key or f"{spec.slug}-public",
        "phone": spec.phone_numbers.front_desk,
        "oncall_phone": spec.phone_numbers.on_call,
        "address": spec.address,
        "business_hours": spec.business_hours,
        "holidays": sorted({d.isoformat() for d in spec.holidays}),
        "policies": spec.policies.model_dump(mode="json"),
        "chat_origins": list(spec.chat_origins),
    }
    providers = {
        p.slug: {
            "name": p.name,
            "title": p.title,
            "calendar_id": p.calendar_id or None,
            "working_hours": p.working_hours,
            "skills": sorted(set(p.skills)),
        }
        for p in spec.providers
    }
    services = {
        s.slug: {
            f: ([c.stored() for c in s.contraindications] if f == "contraindications" else getattr(s, f))
            for f in SERVICE_FIELDS
        }
        for s in spec.services
    }
    automations = {k: a.model_dump(mode="json") for k, a in spec.automations.items()}
    return ClinicState(
        clinic=clinic,
        sms_numbers={n.number: n.messaging_service_sid for n in spec.phone_numbers.sms},
        providers=providers,
        services=services,
        automations=automations,
    )


def _set_clinic(session: Session, clinic_id: int) -> None:
    # Owner connections are subject to FORCEd row-level security too (unless superuser): scope the transaction.
    session.execute(text("SELECT set_config('app.clinic_id', :c, true)"), {"c": str(int(clinic_id))})


def _hours_from_db(value: Any) -> dict[str, list[list[str]]]:
    try:
        return parse_week(value or {})
    except ValueError:
        return dict(value or {})


def read_state(session: Session, slug: str) -> ClinicState | None:
    """The clinic's current configuration, or None when no clinic has this slug."""
    row = session.execute(text("SELECT * FROM clinics WHERE slug = :s"), {"s": slug}).mappings().one_or_none()
    if row is None:
        return None
    clinic_id = int(row["id"])
    _set_clinic(session, clinic_id)
    clinic = {"slug": row["slug"], **{f: row[f] for f in CLINIC_FIELDS}}
    clinic["business_hours"] = _hours_from_db(row["business_hours"])
    clinic["holidays"] = [str(d) for d in (row["holidays"] or [])]
    numbers = {
        r.e164: r.messaging_service_sid
        for r in session.execute(
            text("SELECT e164, messaging_service_sid FROM clinic_phone_numbers WHERE clinic_id = :c ORDER BY id"),
            {"c": clinic_id},
        )
    }
    skills: dict[int, list[str]] = {}
    for r in session.execute(
        text("""SELECT ps.provider_id, s.slug FROM provider_services ps JOIN services s ON s.id = ps.service_id
                WHERE ps.clinic_id = :c AND s.active"""),
        {"c": clinic_id},
    ):
        skills.setdefault(int(r.provider_id), []).append(r.slug)
    providers: dict[str, dict[str, Any]] = {}
    inactive_providers: set[str] = set()
    for r in session.execute(
        text(
            "SELECT id, slug, name, title, calendar_id, working_hours, active FROM providers WHERE clinic_id = :c "
            "ORDER BY id"
        ),
        {"c": clinic_id},
    ):
        if not r.active:
            inactive_providers.add(r.slug)
            continue
        providers[r.slug] = {
            "name": r.name,
            "title": r.title,
            "calendar_id": r.calendar_id,
            "working_hours": _hours_from_db(r.working_hours),
            "skills": sorted(skills.get(r.id, [])),
        }
    services: dict[str, dict[str, Any]] = {}
    inactive_services: set[str] = set()
    for service_row in session.execute(
        text(f"SELECT slug, active, {', '.join(SERVICE_FIELDS)} FROM services WHERE clinic_id = :c ORDER BY id"),
        {"c": clinic_id},
    ).mappings():
        if not service_row["active"]:
            inactive_services.add(service_row["slug"])
            continue
        services[service_row["slug"]] = {
            f: (list(service_row[f] or []) if f in ("synonyms", "contraindications") else service_row[f])
            for f in SERVICE_FIELDS
        }
    automations = {
        r.kind: {"enabled": bool(r.enabled), "template": r.template, "settings": dict(r.settings or {})}
        for r in session.execute(
            text("SELECT kind, enabled, template, settings FROM automations WHERE clinic_id = :c ORDER BY id"),
            {"c": clinic_id},
        )
    }
    return ClinicState(
        clinic=clinic,
        sms_numbers=numbers,
        providers=providers,
        services=services,
        automations=automations,
        clinic_id=clinic_id,
        inactive_providers=inactive_providers,
        inactive_services=inactive_services,
    )


# ---------------------------------------------------------------------------------------------- diff
@dataclass(frozen=True)
class Change:
    op: Literal["+", "-", "~"]
    subject: str  # "clinic glow-medspa", "service neurotoxin", ...
    detail: str = ""

    def line(self) -> str:
        return f"{self.op} {self.subject}" + (f": {self.detail}" if self.detail else "")


def _show(value: Any, limit: int = 60) -> str:
    if value is None or value == "":
        return "(unset)" if value is None else '""'
    if isinstance(value, str):
        shown = value if len(value) <= limit else value[: limit - 3] + "..."
        return json.dumps(shown, ensure_ascii=False)
    shown = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _field_changes(subject: str, old: dict[str, Any], new: dict[str, Any], fields: tuple[str, ...]) -> list[Change]:
    changes: list[Change] = []
    for name in fields:
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name in ("business_hours", "working_hours"):
            for day in DAYS:
                if (before or {}).get(day, []) != (after or {}).get(day, []):
                    changes.append(
                        Change(
                            "~",
                            subject,
                            f"{name} {day} {format_ranges((before or {}).get(day, []))}"
                            f" -> {format_ranges((after or {}).get(day, []))}",
                        )
                    )
        elif name in ("policies", "settings") and isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    changes.append(
                        Change("~", subject, f"{name}.{key} {_show(before.get(key))} -> {_show(after.get(key))}")
                    )
        else:
            changes.append(Change("~", subject, f"{name} {_show(before)} -> {_show(after)}"))
    return changes


def diff_states(current: ClinicState | None, desired: ClinicState) -> list[Change]:
    """What applying ``desired`` would change, one line per field (empty: nothing to do)."""
    slug = desired.slug
    if current is None:
        c = desired.clinic
        changes = [Change("+", f"clinic {slug}", f"{c['name']}, {c['timezone']}")]
        changes += [Change("+", f"sms number {n}") for n in desired.sms_numbers]
        changes += [
            Change("+", f"service {s}", f"{v['name']}, ${v['price_cents'] / 100:,.2f}")
            for s, v in desired.services.items()
        ]
        changes += [
            Change("+", f"provider {p}", f"{v['name']}, skills: {', '.join(v['skills']) or 'none'}")
            for p, v in desired.providers.items()
        ]
        changes += [
            Change("+", f"automation {k}", "enabled" if v["enabled"] else "disabled")
            for k, v in desired.automations.items()
        ]
        return changes
    changes = _field_changes(f"clinic {slug}", current.clinic, desired.clinic, CLINIC_FIELDS)
    for number, sid in desired.sms_numbers.items():
        if number not in current.sms_numbers:
            changes.append(Change("+", f"sms number {number}"))
        elif current.sms_numbers[number] != sid:
            changes.append(
                Change(
                    "~",
                    f"sms number {number}",
                    f"messaging_service_sid {_show(current.sms_numbers[number])} -> {_show(sid)}",
                )
            )
    changes += [
        Change("-", f"sms number {n}", "stops routing to this clinic")
        for n in current.sms_numbers
        if n not in desired.sms_numbers
    ]
    for kind, fields, now, want, inactive in (
        ("service", SERVICE_FIELDS, current.services, desired.services, current.inactive_services),
        ("provider", PROVIDER_FIELDS, current.providers, desired.providers, current.inactive_providers),
    ):
        for key, values in want.items():
            if key in now:
                changes += _field_changes(f"{kind} {key}", now[key], values, fields)
            else:
                changes.append(
                    Change("+", f"{kind} {key}", values["name"] + (" (reactivated)" if key in inactive else ""))
                )
        changes += [Change("-", f"{kind} {key}", "deactivated (history kept)") for key in now if key not in want]
    for kind, values in desired.automations.items():
        if kind in current.automations:
            changes += _field_changes(f"automation {kind}", current.automations[kind], values, AUTOMATION_FIELDS)
        else:
            changes.append(Change("+", f"automation {kind}", "enabled" if values["enabled"] else "disabled"))
    changes += [
        Change("~", f"automation {kind}", "enabled true -> false (not in the file)")
        for kind, values in current.automations.items()
        if kind not in desired.automations and values["enabled"]
    ]
    return changes


def number_conflicts(session: Session, desired: ClinicState) -> list[str]:
    """SMS numbers in the file that already route to a different clinic."""
    rows = session.execute(
        text("""SELECT n.e164, c.slug FROM clinic_phone_numbers n JOIN clinics c ON c.id = n.clinic_id
                WHERE n.e164 = ANY(:numbers) AND c.slug <> :slug ORDER BY n.e164"""),
        {"numbers": list(desired.sms_numbers), "slug": desired.slug},
    )
    return [f"SMS number {r.e164} already belongs to clinic {r.slug!r}" for r in rows]


# ---------------------------------------------------------------------------------------------- apply
def lock_slug(session: Session, slug: str) -> None:
    """Serialise concurrent applies of one clinic (held until the transaction ends)."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('medspa-clinic-apply:' || :s))"), {"s": slug})


def _service_value(field_name: str) -> str:
    return f"CAST(:{field_name} AS jsonb)" if field_name in JSON_SERVICE_FIELDS else f":{field_name}"


def write_state(session: Session, current: ClinicState | None, desired: ClinicState) -> int:
    """Make the database hold ``desired``; runs inside the caller's (owner-role) transaction.  Returns the id."""
    c = desired.clinic
    values = {
        "slug": c["slug"],
        "name": c["name"],
        "timezone": c["timezone"],
        "public_key": c["public_key"],
        "phone": c["phone"],
        "oncall_phone": c["oncall_phone"],
        "address": c["address"],
        "business_hours": json.dumps(c["business_hours"]),
        "holidays": json.dumps(c["holidays"]),
        "policies": json.dumps(c["policies"]),
        "chat_origins": json.dumps(c["chat_origins"]),
    }
    if current is None:
        clinic_id = int(
            session.execute(
                text("""INSERT INTO clinics (slug, name, timezone, public_key, phone, oncall_phone, address,
                                         business_hours, holidays, policies, chat_origins)
                    VALUES (:slug, :name, :timezone, :public_key, :phone, :oncall_phone, :address,
                            CAST(:business_hours AS jsonb), CAST(:holidays AS jsonb), CAST(:policies AS jsonb),
                            CAST(:chat_origins AS jsonb))
                    RETURNING id"""),
                values,
            ).scalar_one()
        )
    else:
        clinic_id = int(current.clinic_id or 0)
        session.execute(
            text("""UPDATE clinics SET name = :name, timezone = :timezone, public_key = :public_key, phone = :phone,
                           oncall_phone = :oncall_phone, address = :address,
                           business_hours = CAST(:business_hours AS jsonb), holidays = CAST(:holidays AS jsonb),
                           policies = CAST(:policies AS jsonb), chat_origins = CAST(:chat_origins AS jsonb)
                    WHERE id = :id"""),
            {**values, "id": clinic_id},
        )
    _set_clinic(session, clinic_id)

    # SMS numbers (tenant directory)
    session.execute(
        text("DELETE FROM clinic_phone_numbers WHERE clinic_id = :c AND NOT (e164 = ANY(:numbers))"),
        {"c": clinic_id, "numbers": list(desired.sms_numbers)},
    )
    for number, sid in desired.sms_numbers.items():
        session.execute(
            text("""INSERT INTO clinic_phone_numbers (clinic_id, e164, messaging_service_sid) VALUES (:c, :n, :sid)
                    ON CONFLICT (e164) DO UPDATE SET messaging_service_sid = EXCLUDED.messaging_service_sid
                    WHERE clinic_phone_numbers.clinic_id = EXCLUDED.clinic_id"""),
            {"c": clinic_id, "n": number, "sid": sid},
        )

    # services
    service_ids: dict[str, int] = {}
    for slug, s in desired.services.items():
        service_ids[slug] = int(
            session.execute(
                text(f"""INSERT INTO services (clinic_id, slug, active, {", ".join(SERVICE_FIELDS)})
                     VALUES (:c, :slug, true, {", ".join(_service_value(f) for f in SERVICE_FIELDS)})
                     ON CONFLICT (clinic_id, slug) DO UPDATE SET active = true,
                         {", ".join(f"{f} = EXCLUDED.{f}" for f in SERVICE_FIELDS)}
                     RETURNING id"""),
                {
                    "c": clinic_id,
                    "slug": slug,
                    **{f: (json.dumps(v) if f in JSON_SERVICE_FIELDS else v) for f, v in s.items()},
                },
            ).scalar_one()
        )
    session.execute(
        text("UPDATE services SET active = false WHERE clinic_id = :c AND active AND NOT (slug = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.services)},
    )

    # providers and who does what
    session.execute(text("DELETE FROM provider_services WHERE clinic_id = :c"), {"c": clinic_id})
    for slug, p in desired.providers.items():
        provider_id = int(
            session.execute(
                text("""INSERT INTO providers (clinic_id, slug, name, title, calendar_id, working_hours, active)
                    VALUES (:c, :slug, :name, :title, :calendar_id, CAST(:hours AS jsonb), true)
                    ON CONFLICT (clinic_id, slug) DO UPDATE SET name = EXCLUDED.name, title = EXCLUDED.title,
                        calendar_id = EXCLUDED.calendar_id, working_hours = EXCLUDED.working_hours, active = true
                    RETURNING id"""),
                {
                    "c": clinic_id,
                    "slug": slug,
                    "name": p["name"],
                    "title": p["title"],
                    "calendar_id": p["calendar_id"],
                    "hours": json.dumps(p["working_hours"]),
                },
            ).scalar_one()
        )
        for skill in p["skills"]:
            session.execute(
                text("INSERT INTO provider_services (clinic_id, provider_id, service_id) VALUES (:c, :p, :s)"),
                {"c": clinic_id, "p": provider_id, "s": service_ids[skill]},
            )
    session.execute(
        text("UPDATE providers SET active = false WHERE clinic_id = :c AND active AND NOT (slug = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.providers)},
    )

    # automations
    for kind, a in desired.automations.items():
        session.execute(
            text("""INSERT INTO automations (clinic_id, kind, enabled, template, settings)
                    VALUES (:c, :kind, :enabled, :template, CAST(:settings AS jsonb))
                    ON CONFLICT (clinic_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled,
                        template = EXCLUDED.template, settings = EXCLUDED.settings"""),
            {
                "c": clinic_id,
                "kind": kind,
                "enabled": a["enabled"],
                "template": a["template"],
                "settings": json.dumps(a["settings"]),
            },
        )
    session.execute(
        text("UPDATE automations SET enabled = false WHERE clinic_id = :c AND enabled AND NOT (kind = ANY(:keep))"),
        {"c": clinic_id, "keep": list(desired.automations)},
    )
    return clinic_id


# ---------------------------------------------------------------------------------------------- export
def state_to_file(state: ClinicState) -> dict[str, Any]:
    """The YAML document that reproduces ``state`` (the inverse of ``desired_state``)."""
    c = state.clinic

    def week(hours: dict[str, list[list[str]]]) -> dict[str, list[str]]:
        return {day: [f"{a}-{b}" for a, b in hours.get(day, [])] for day in DAYS}

    phone_numbers: dict[str, Any] = {"front_desk": c["phone"]}
    if c.get("oncall_phone"):
        phone_numbers["on_call"] = c["oncall_phone"]
    phone_numbers["sms"] = [
        {"number": n, "messaging_service_sid": sid} if sid else n for n, sid in state.sms_numbers.items()
    ]
    document: dict[str, Any] = {
        "slug": c["slug"],
        "name": c["name"],
        "timezone": c["timezone"],
        "public_key": c["public_key"],
        "address": c["address"],
        "phone_numbers": phone_numbers,
        "business_hours": week(c["business_hours"]),
        "holidays": list(c["holidays"]),
        "policies": _ordered_policies(c["policies"] or {}),
        "chat_origins": list(c["chat_origins"]),
        "services": [{"slug": slug, **values} for slug, values in state.services.items()],
        "providers": [
            {
                "slug": slug,
                "name": p["name"],
                "title": p["title"],
                "calendar_id": p["calendar_id"],
                "working_hours": week(p["working_hours"]),
                "skills": p["skills"],
            }
            for slug, p in state.providers.items()
        ],
        "automations": {kind: a for kind, a in state.automations.items()},
    }
    return document


def _ordered_policies(policies: dict[str, Any]) -> dict[str, Any]:
    """Known policies in the model's order, then any others; the keys themselves are kept exactly."""
    known = [name for name in Policies.model_fields if name in policies]
    return {name: policies[name] for name in known + sorted(set(policies) - set(known))}


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    # Short lists of scalars (hours, skills, synonyms) read best on one line.
    flow = all(isinstance(v, str | int | float) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow or None)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


def dump_yaml(document: dict[str, Any], header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return header + body
