"""A clinic's state as rows: the state a file asks for, and the state the database holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import set_clinic
from worker.clinic_config.spec import ClinicFile, settings_values
from worker.clinic_config.values import parse_week


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
SETTINGS_FIELDS = ("business_hours", "holidays", "policies")  # the fields of ``ClinicSettings``
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
        **settings_values(spec),
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
    set_clinic(session, clinic_id)  # owner connections are subject to the FORCEd RLS too
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
