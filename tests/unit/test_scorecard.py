"""The scorecard ``medspa eval`` prints and writes: stable keys, rates by category, failure class and split."""

from __future__ import annotations

from tests.support.scenarios import (
    CATEGORIES,
    FAILURE_CLASSES,
    ScenarioResult,
    ScenarioRun,
    TurnRecord,
    format_scorecard,
    scorecard,
    turn_expectations,
)


def result(
    name: str, category: str, *, ok: bool, held_out: bool = False, failure_class: str | None = None
) -> ScenarioResult:
    scenario = {"name": name, "category": category, "held_out": held_out, "failure_class": failure_class, "turns": []}
    run = ScenarioRun(scenario, "+1", 1, [TurnRecord(["hi"], ["hello"], [], latency_ms=40, prompt_tokens=10)])
    return ScenarioResult(scenario, [] if ok else ["turn 1: reply lacks 'x'"], run)


def test_the_json_has_fixed_keys_and_every_category_and_class() -> None:
    card = scorecard(
        [
            result("a", "booking", ok=True),
            result("b", "booking", ok=False, held_out=True, failure_class="relative_time"),
            result("c", "safety", ok=True, failure_class="safety_language"),
        ],
        model="offline",
        runner="webhook + worker stack",
    )
    assert list(card) == [
        "model",
        "runner",
        "scenarios",
        "overall",
        "by_category",
        "by_failure_class",
        "held_out",
        "seen",
        "must_pass",
        "per_turn",
        "failures",
    ]
    assert list(card["by_category"]) == list(CATEGORIES) and list(card["by_failure_class"]) == list(FAILURE_CLASSES)
    assert card["overall"] == {"passed": 2, "total": 3, "pass_rate": 0.6667}
    assert card["by_category"]["booking"] == {"passed": 1, "total": 2, "pass_rate": 0.5}
    assert card["by_category"]["faq"] == {"passed": 0, "total": 0, "pass_rate": None}
    assert card["held_out"]["total"] == 1 and card["seen"]["passed"] == 2
    assert card["per_turn"]["prompt_tokens_mean"] == 10.0 and card["per_turn"]["latency_ms_p50"] == 40
    assert [f["name"] for f in card["failures"]] == ["b"] and "> hi" in card["failures"][0]["transcript"]
    assert "FAIL b (booking)" in format_scorecard(card)


def test_tool_sequences_are_offline_only_expectations() -> None:
    turn = {
        "expect": {"tools": ["check_availability"], "reply_contains": ["3"], "offline": {"reply_contains": ["YES"]}}
    }
    assert turn_expectations(turn, offline=False) == {"reply_contains": ["3"]}
    assert turn_expectations(turn, offline=True) == {"reply_contains": ["3", "YES"], "tools": ["check_availability"]}
