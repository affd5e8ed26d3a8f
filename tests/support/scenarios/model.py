"""Scenarios as data: the categories and failure classes, a run's records, loading and validating the YAML files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from domain.appointments import LIVE_STATUSES

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"
DEFAULT_MAX_LENGTH = 320
LIVE = LIVE_STATUSES

CATEGORIES = ("booking", "reschedule_cancel", "faq", "screening", "compliance", "safety", "injection", "robustness")
# The classes of failure issue 14 names, in its order.
FAILURE_CLASSES = (
    "screening",  # 1. clinical screening before offering a treatment
    "confirmation",  # 2. confirmations with extra words
    "question_not_booking",  # 3. a question is not a booking request
    "relative_time",  # 4. relative and partial times that depend on context
    "direct_answer",  # 5. direct answers
    "names",  # 6. names and profile
    "safety_language",  # 7. safety in the patient's language
    "multi_topic",  # 8. multi-topic messages
)
# Categories the offline policy must pass in full (issue 14's bar).
MUST_PASS = ("safety", "screening", "compliance", "injection")
# Per-turn expectation keys that describe how the offline policy gets there, not the outcome.
OFFLINE_ONLY_KEYS = ("tools", "tools_include", "tool_args", "tool_ok", "no_tool_calls")


@dataclass
class TurnRecord:
    sent: list[str]
    replies: list[str]
    tool_calls: list[dict[str, Any]]  # name, arguments, ok, result
    latency_ms: int = 0  # from the first message sent to the reply (stack) / the brain's run (direct)
    model_latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ScenarioRun:
    scenario: dict[str, Any]
    phone: str
    clinic_id: int
    turns: list[TurnRecord] = field(default_factory=list)
    setup_ids: dict[str, int] = field(default_factory=dict)
    pages: int | None = None  # on-call pages the pipeline sent for this conversation (None: direct run, no outbox)


# ------------------------------------------------------------------------------------------------ loading
def load_scenarios(directory: Path = SCENARIO_DIR) -> list[dict[str, Any]]:
    """Every scenario file in ``directory`` (JSON or YAML), sorted by file name, validated."""
    scenarios = []
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    for path in paths:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a scenario is a mapping")
        data.setdefault("name", path.stem.replace("_", "-"))
        data["_file"] = path.name
        problems = validate_scenario(data)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        scenarios.append(data)
    names = [s["name"] for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"scenario names must be unique: {duplicates}")
    return scenarios


def validate_scenario(scenario: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in ("clinic", "clock", "patient", "turns"):
        if key not in scenario:
            problems.append(f"missing {key}")
    if scenario.get("category") not in CATEGORIES:
        problems.append(f"category must be one of {CATEGORIES}, got {scenario.get('category')!r}")
    if not isinstance(scenario.get("known_failure", ""), str):
        problems.append("known_failure is the reason the offline policy fails it today (text)")
    if scenario.get("failure_class") not in (None, *FAILURE_CLASSES):
        problems.append(f"failure_class must be one of {FAILURE_CLASSES}")
    for index, turn in enumerate(scenario.get("turns") or []):
        sent = turn.get("send_all") or [turn.get("send")]
        if not all(isinstance(m, str) and m for m in sent):
            # YAML reads a bare yes/no/on/off as a boolean: quote messages like "yes".
            problems.append(f"turn {index + 1} must send text (quote YAML words like yes/no): {sent!r}")
    return problems


def as_pytest_params(scenarios: list[dict[str, Any]]) -> list[Any]:
    """Scenarios as pytest parameters; a ``known_failure`` is a strict expected failure (it must fail, so fixing it
    means removing the marker), never a hidden one: ``medspa eval`` counts it as failed."""
    import pytest

    return [
        pytest.param(
            s,
            id=s["name"],
            marks=[pytest.mark.xfail(strict=True, reason=s["known_failure"])] if s.get("known_failure") else [],
        )
        for s in scenarios
    ]


def patient_messages(scenario: dict[str, Any]) -> list[str]:
    """Everything the patient sends in a scenario (what held-out scenarios keep out of the NLU examples)."""
    out: list[str] = []
    for turn in scenario["turns"]:
        out += list(turn.get("send_all") or [turn["send"]])
    return out
