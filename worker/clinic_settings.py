"""A clinic's settings as staff edit them from the console — opening hours, closed dates, policies (quiet hours
among them): read from the clinic row, validated by the clinic file's own rules (``worker.clinic_config``), and
stored through ``medspa_set_clinic_settings`` (migration 0013), which writes exactly these columns of the clinic
in the transaction's tenant scope.  Everything else about a clinic (numbers, menu, staff on the calendar) stays
in its YAML file (``medspa clinic apply``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker.clinic_config import (
    SETTINGS_FIELDS,
    ClinicConfigError,
    Policies,
    parse_settings,
    parse_week,
    settings_changes,
    settings_values,
)

_READ = text("SELECT slug, timezone, business_hours, holidays, policies FROM clinics WHERE id = :id")
_WRITE = text(
    """SELECT medspa_set_clinic_settings(CAST(:business_hours AS jsonb), CAST(:holidays AS jsonb),
                                         CAST(:policies AS jsonb))"""
)
EDITABLE_POLICIES = tuple(Policies.model_fields)  # the typed policies; other keys stay as the file wrote them


@dataclass(frozen=True)
class StoredSettings:
    slug: str
    timezone: str
    business_hours: dict[str, list[list[str]]]
    holidays: list[str]
    policies: dict[str, Any]  # every typed policy (defaults filled in), then any others as stored

    def values(self) -> dict[str, Any]:
        return {"business_hours": self.business_hours, "holidays": self.holidays, "policies": self.policies}


@dataclass(frozen=True)
class SettingsUpdate:
    settings: StoredSettings
    changes: list[str]  # one line per changed field, as ``medspa clinic apply`` shows them


def read_settings(session: Session, clinic_id: int) -> StoredSettings:
    row = session.execute(_READ, {"id": clinic_id}).mappings().one()
    try:
        hours = parse_week(row["business_hours"] or {})
    except ValueError:
        hours = dict(row["business_hours"] or {})
    stored = dict(row["policies"] or {})
    try:
        policies = Policies.model_validate(stored).model_dump(mode="json")
    except ValueError:
        policies = stored
    return StoredSettings(
        slug=str(row["slug"]),
        timezone=str(row["timezone"]),
        business_hours=hours,
        holidays=sorted(str(d) for d in (row["holidays"] or [])),
        policies=policies,
    )


def update_settings(session: Session, clinic_id: int, edit: dict[str, Any]) -> SettingsUpdate:
    """Apply ``edit`` (any of business_hours, holidays — each replaced whole — and policies, merged key by key;
    quiet_hours as a whole) over the stored settings; raises ``ClinicConfigError`` with one clear line."""
    unknown = sorted(set(edit) - set(SETTINGS_FIELDS))
    if unknown:
        raise ClinicConfigError(f"{unknown[0]}: not a setting editable here ({', '.join(SETTINGS_FIELDS)})")
    current = read_settings(session, clinic_id)
    merged = current.values()
    if "business_hours" in edit:
        merged["business_hours"] = edit["business_hours"]
    if "holidays" in edit:
        merged["holidays"] = edit["holidays"]
    if "policies" in edit:
        policies = edit["policies"]
        if not isinstance(policies, dict):
            raise ClinicConfigError("policies: expected a mapping of policy to value")
        refused = sorted(set(policies) - set(EDITABLE_POLICIES))
        if refused:
            raise ClinicConfigError(f"policies.{refused[0]}: unknown policy (known: {', '.join(EDITABLE_POLICIES)})")
        merged["policies"] = {**current.policies, **policies}
    desired = settings_values(parse_settings(merged))
    changes = [c.line() for c in settings_changes(current.slug, current.values(), desired)]
    if changes:
        session.execute(_WRITE, {key: json.dumps(desired[key]) for key in SETTINGS_FIELDS})
    return SettingsUpdate(read_settings(session, clinic_id), changes)
