"""The clinic file's model (validated before any database access) and loading it from YAML."""

from __future__ import annotations

import re
import string
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain import missed_calls
from domain.appointments import DEFAULT_HOLD_MINUTES
from domain.screening import CONDITIONS, Contraindication
from worker.clinic_config.values import (
    _KIND,
    _SLUG,
    ClinicConfigError,
    _clock,
    check_timezone,
    parse_phone,
    parse_week,
)


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
    """When reminders and other automated texts may go out (recipient-local); marketing keeps 08:00-21:00."""

    start: str = "08:00"
    end: str = "21:00"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> str:
        return _clock(value)

    @model_validator(mode="after")
    def _order(self) -> QuietHours:
        if self.start >= self.end:  # HH:MM strings order like the times they name
            raise ValueError(f"the window {self.start}-{self.end} must start before it ends (same day)")
        return self


class MissedCallsSpec(_Strict):
    """Missed-call text-back (``domain.missed_calls``): how a call to the clinic's number is answered and the one
    text an unanswered caller gets.  ``{clinic}`` in the greeting and the text is the clinic's name."""

    enabled: bool = Field(default=True, description="text callers whose call nobody answered")
    greeting: str = Field(default=missed_calls.DEFAULT_GREETING, min_length=1, max_length=400)
    text: str = Field(default=missed_calls.DEFAULT_TEXT, min_length=1, max_length=320)
    forward_during_hours: bool = Field(default=False, description="ring the front desk during business hours")
    forward_to: str | None = Field(default=None, description="the number to ring (default: phone_numbers.front_desk)")
    ring_seconds: int = Field(default=missed_calls.DEFAULT_RING_SECONDS, ge=5, le=60)
    daily_cap: int = Field(default=missed_calls.DEFAULT_DAILY_CAP, ge=0, le=10, description="texts per caller per day")

    @field_validator("forward_to")
    @classmethod
    def _forward_to(cls, value: str | None) -> str | None:
        return parse_phone(value) if value else None


class Policies(BaseModel):
    """Known policies are typed; other keys are kept as written (the agent reads them as clinic facts)."""

    model_config = ConfigDict(extra="allow")
    cancellation_window_hours: int = Field(default=24, ge=0)
    late_cancel_fee_cents: int = Field(default=0, ge=0)
    deposit_policy: str = ""
    deposit_refund_outside_window: bool = True
    deposit_hold_minutes: int = Field(default=DEFAULT_HOLD_MINUTES, ge=1)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    marketing_cap_per_week: int = Field(default=2, ge=0)
    opt_out_footer: str = "Reply STOP to opt out."
    min_lead_minutes: int = Field(default=120, ge=0)
    payment_methods: str = ""
    parking: str = ""
    review_url: str = ""
    # Set only when written in the file (the stored policies of a clinic that does not use them stay as they were).
    missed_calls: MissedCallsSpec | None = None
    vision_model: bool | None = Field(
        default=None, description="send patients' photos to a vision model (default off: never)"
    )

    @model_validator(mode="before")
    @classmethod
    def _older_fee_name(cls, data: Any) -> Any:
        """``late_fee_cents`` is the older name of ``late_cancel_fee_cents``: read as it, never kept beside it (the
        default fee of 0 would otherwise be saved next to it and win, ``domain.appointments.CancellationPolicy``)."""
        if isinstance(data, dict) and "late_fee_cents" in data:
            data = dict(data)
            older = data.pop("late_fee_cents")
            if "late_cancel_fee_cents" in data and data["late_cancel_fee_cents"] != older:
                raise ValueError(
                    "late_fee_cents is the older name of late_cancel_fee_cents: write only late_cancel_fee_cents"
                )
            data["late_cancel_fee_cents"] = older
        return data


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


SCREENING_CONDITIONS = CONDITIONS  # the condition Literal below must list the same (a unit test checks)


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
        """The JSON kept in services.contraindications (``domain.screening.Contraindication.as_dict``)."""
        return Contraindication(
            self.condition, self.position, tuple(self.suggest), self.min_age, tuple(self.ingredients)
        ).as_dict()


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


class ClinicSettings(_Strict):
    """The part of a clinic file staff may also edit from the console: opening hours, closed dates, policies
    (quiet hours among them).  ``ClinicFile`` is this plus the rest, so both are validated by the same rules."""

    business_hours: dict[str, list[list[str]]] = Field(default_factory=lambda: parse_week({}))
    holidays: list[date] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)

    @field_validator("business_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> dict[str, list[list[str]]]:
        return parse_week(value)


class ClinicFile(ClinicSettings):
    slug: str
    name: str = Field(min_length=1)
    timezone: str
    country: str = Field(default="US", description="region for phone numbers written without +country code")
    public_key: str | None = Field(default=None, description="web chat widget key (not a secret)")
    address: str = ""
    phone_numbers: PhoneNumbers
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


def parse_settings(data: Any) -> ClinicSettings:
    """The console's edit of a clinic's settings, validated like the file; one clear line on the first error."""
    if not isinstance(data, dict):
        raise ClinicConfigError("expected a mapping of settings")
    try:
        return ClinicSettings.model_validate(data)
    except ValidationError as exc:
        raise ClinicConfigError(_first_error(exc, data)) from None


def _policies(policies: Policies) -> dict[str, Any]:
    stored = policies.model_dump(mode="json")
    for optional in ("missed_calls", "vision_model"):  # left out unless the file sets them
        if stored.get(optional) is None:
            stored.pop(optional, None)
    return stored


def settings_values(settings: ClinicSettings) -> dict[str, Any]:
    """The stored form of the settings (what ``desired_state`` writes to the clinic row for these fields)."""
    return {
        "business_hours": settings.business_hours,
        "holidays": sorted({d.isoformat() for d in settings.holidays}),
        "policies": _policies(settings.policies),
    }


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
