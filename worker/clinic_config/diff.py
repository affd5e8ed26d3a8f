"""The diff between the database's state and the file's: what ``apply`` will change, shown before it does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker.clinic_config.state import (
    AUTOMATION_FIELDS,
    CLINIC_FIELDS,
    PROVIDER_FIELDS,
    SERVICE_FIELDS,
    SETTINGS_FIELDS,
    ClinicState,
)
from worker.clinic_config.values import DAYS, format_ranges


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


def settings_changes(slug: str, current: dict[str, Any], desired: dict[str, Any]) -> list[Change]:
    """What storing ``desired`` settings over ``current`` would change, one line per field (as ``apply`` shows)."""
    return _field_changes(f"clinic {slug}", current, desired, SETTINGS_FIELDS)
