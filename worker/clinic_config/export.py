"""Export: a clinic's state back to a clinic file (YAML with the file's key order)."""

from __future__ import annotations

from typing import Any

import yaml

from worker.clinic_config.spec import Policies
from worker.clinic_config.state import ClinicState
from worker.clinic_config.values import DAYS


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
