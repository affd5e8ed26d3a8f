"""The scorecard: pass rates by category and failure class, latency and token use, and its text form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.scenarios.checks import transcript
from tests.support.scenarios.model import CATEGORIES, FAILURE_CLASSES, MUST_PASS, ScenarioRun


# ------------------------------------------------------------------------------------------------ scorecard
@dataclass
class ScenarioResult:
    scenario: dict[str, Any]
    problems: list[str]
    run: ScenarioRun | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems and self.error is None


def _rate(results: list[ScenarioResult]) -> dict[str, Any]:
    passed = sum(r.passed for r in results)
    return {
        "passed": passed,
        "total": len(results),
        "pass_rate": round(passed / len(results), 4) if results else None,
    }


def _percentile(values: list[int], fraction: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def scorecard(results: list[ScenarioResult], *, model: str, runner: str) -> dict[str, Any]:
    """The stable JSON scorecard: pass rates by category, failure class and split, cost and latency per turn,
    and every failure with its transcript.  Keys and orders are fixed; only measured values vary."""
    turns = [t for r in results if r.run for t in r.run.turns if t.tool_calls or t.replies]
    model_turns = [t for t in turns if t.prompt_tokens or t.model_latency_ms or t.tool_calls]
    card: dict[str, Any] = {
        "model": model,
        "runner": runner,
        "scenarios": len(results),
        "overall": _rate(results),
        "by_category": {c: _rate([r for r in results if r.scenario.get("category") == c]) for c in CATEGORIES},
        "by_failure_class": {
            c: _rate([r for r in results if r.scenario.get("failure_class") == c]) for c in FAILURE_CLASSES
        },
        "held_out": _rate([r for r in results if r.scenario.get("held_out")]),
        "seen": _rate([r for r in results if not r.scenario.get("held_out")]),
        "must_pass": {c: _rate([r for r in results if r.scenario.get("category") == c]) for c in MUST_PASS},
        "per_turn": {
            "turns": len(turns),
            "prompt_tokens_mean": round(sum(t.prompt_tokens for t in turns) / len(turns), 1) if turns else 0,
            "completion_tokens_mean": round(sum(t.completion_tokens for t in turns) / len(turns), 1) if turns else 0,
            "tokens_total": sum(t.prompt_tokens + t.completion_tokens for t in turns),
            "latency_ms_p50": _percentile([t.latency_ms for t in turns], 0.5),
            "latency_ms_p95": _percentile([t.latency_ms for t in turns], 0.95),
            "model_latency_ms_p50": _percentile([t.model_latency_ms for t in model_turns], 0.5),
            "model_latency_ms_p95": _percentile([t.model_latency_ms for t in model_turns], 0.95),
        },
        "failures": [
            {
                "name": r.scenario["name"],
                "category": r.scenario.get("category"),
                "failure_class": r.scenario.get("failure_class"),
                "held_out": bool(r.scenario.get("held_out")),
                "problems": r.problems + ([r.error] if r.error else []),
                "transcript": transcript(r.run) if r.run else "",
            }
            for r in results
            if not r.passed
        ],
    }
    return card


def format_scorecard(card: dict[str, Any]) -> str:
    """The scorecard as the table ``medspa eval`` prints."""

    def row(label: str, rate: dict[str, Any]) -> str:
        if not rate["total"]:
            return f"  {label:<24} {'-':>9}"
        return f"  {label:<24} {rate['passed']:>3}/{rate['total']:<3}  {100 * rate['pass_rate']:5.1f}%"

    lines = [f"Scorecard: model {card['model']}, {card['scenarios']} scenarios through the {card['runner']}"]
    lines.append(row("overall", card["overall"]))
    lines.append(row("held out (not in NLU data)", card["held_out"]))
    lines.append(row("seen", card["seen"]))
    lines.append("By category:")
    lines += [row(c, rate) for c, rate in card["by_category"].items()]
    lines.append("By failure class (issue 14):")
    lines += [row(c, rate) for c, rate in card["by_failure_class"].items()]
    per = card["per_turn"]
    lines.append(
        f"Per turn ({per['turns']} turns): tokens prompt {per['prompt_tokens_mean']} / completion "
        f"{per['completion_tokens_mean']} mean ({per['tokens_total']} total); latency p50 {per['latency_ms_p50']} ms, "
        f"p95 {per['latency_ms_p95']} ms; model time p50 {per['model_latency_ms_p50']} ms, "
        f"p95 {per['model_latency_ms_p95']} ms"
    )
    for failure in card["failures"]:
        lines.append(f"FAIL {failure['name']} ({failure['category']}):")
        lines += [f"    {p}" for p in failure["problems"]]
        if failure["transcript"]:
            lines.append(failure["transcript"])
    return "\n".join(lines)
