"""``medspa eval``: measure a model on the conversation scenarios, through the real pipeline.

Starts a throwaway copy of the service — embedded Postgres and Redis in a temporary folder (migrated and
seeded), the webhook app over HTTP, a real Dramatiq worker, a fake Twilio that records the replies — and runs
every scenario of ``tests/scenarios/`` (or ``--scenarios DIR``) as a patient would: signed Twilio webhooks in,
SMS out.  Then it checks each scenario's outcome expectations (appointments at the end, consent, handoff,
reply patterns, tools never called) and prints a scorecard: pass rate by category and by issue-14 failure
class, the held-out split (scenarios whose messages are not NLU examples) apart from the rest, tokens and
latency per turn, and every failure with its transcript.

Models:
- ``--model offline`` (default): the offline policy (local sentence-embedding NLU + rules).  Its offline-only
  expectations (exact tool sequences, its wording) are checked too.
- ``--model openai``: any OpenAI-compatible Chat Completions server from the environment (``OPENAI_API_KEY``,
  ``OPENAI_BASE_URL``, ``OPENAI_MODEL``), e.g. OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp.  Only outcome
  expectations apply.  ``--openai-fake`` points the same path at the local scripted fake instead (the offline
  policy behind the Chat Completions wire format, with injected 429s and 500s): what CI runs.

Like the drills, this is a developer tool that reuses the test harness (``tests/support``) and needs the
repository checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medspa.settings import REPO_ROOT
from scripts.common import CommandError


def _progress(message: str) -> None:
    print(f"[eval {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ensure_repo_on_path() -> None:
    # The harness lives in tests/ (not an installed package): importable from the checkout.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


@contextlib.contextmanager
def eval_stack(model: str, *, openai_fake: bool) -> Iterator[Any]:
    """A throwaway service with the chosen model; yields the running ``Stack``."""
    _ensure_repo_on_path()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the local models ship in wheels: never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tests.support.infra import start_test_infrastructure, stop_test_infrastructure
    from tests.support.stack import running_stack
    from worker.knowledge import reindex_missing_embeddings

    overrides: dict[str, Any] = {"local_embeddings": True, "log_level": "WARNING"}
    if model == "offline":
        overrides |= {"model_provider": "offline", "openai_api_key": None}
    elif openai_fake:
        # The stack's fake key and base URL; the knowledge base keeps the local vectors the offline runs use.
        overrides |= {"model_provider": "openai", "embeddings_provider": "local"}
    else:
        from medspa.settings import Settings

        real = Settings()
        if real.openai_api_key is None:
            raise CommandError("--model openai needs OPENAI_API_KEY (and OPENAI_BASE_URL/OPENAI_MODEL if not OpenAI)")
        overrides |= {
            "model_provider": "openai",
            "openai_api_key": real.openai_api_key,
            "openai_base_url": real.openai_base_url,
            "openai_model": real.openai_model,
            "model_deadline_s": real.model_deadline_s,
            "embeddings_provider": real.embeddings_provider,
            "openai_embedding_model": real.openai_embedding_model,
        }
    _progress("starting embedded Postgres and Redis (migrate + seed)")
    infra, data_dir = start_test_infrastructure()
    work_dir = Path(tempfile.mkdtemp(prefix="medspa-eval-"))
    try:
        with running_stack(infra, work_dir, **overrides) as (stack, container):
            if model == "openai" and openai_fake:
                from tests.support.openai_policy import install_policy_model

                install_policy_model(stack.openai, inject_errors=True)
            for clinic_id in stack.database.clinic_ids():
                reindex_missing_embeddings(stack.database, clinic_id, container.embedder)
            yield stack
    finally:
        stop_test_infrastructure(data_dir)
        shutil.rmtree(work_dir, ignore_errors=True)


def run_eval(
    scenarios: list[dict[str, Any]], *, model: str, openai_fake: bool = False, reply_timeout: float = 60
) -> list[Any]:
    """Every scenario through the stack; returns the harness's ScenarioResults."""
    _ensure_repo_on_path()
    from tests.support.scenarios import ScenarioResult, check_run, reset_patient, run_scenario_stack

    offline = model == "offline"
    results: list[ScenarioResult] = []
    with eval_stack(model, openai_fake=openai_fake) as stack:
        _progress(f"running {len(scenarios)} scenarios against model {model}{' (local fake)' if openai_fake else ''}")
        for index, scenario in enumerate(scenarios, 1):
            run = None
            try:
                run = run_scenario_stack(scenario, stack, reply_timeout=reply_timeout)
                result = ScenarioResult(scenario, check_run(run, stack.database, offline=offline), run)
            except Exception as exc:  # a scenario that cannot finish is a failure, not the end of the run
                result = ScenarioResult(scenario, [], run, error=f"{type(exc).__name__}: {exc}"[:500])
            finally:
                if run is not None:
                    reset_patient(stack.database, run.clinic_id, run.phone)
            results.append(result)
            if not result.passed:
                _progress(f"{index}/{len(scenarios)} FAIL {scenario['name']}")
            elif index % 20 == 0:
                _progress(f"{index}/{len(scenarios)} done")
    return results


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a model on the conversation scenarios through the real pipeline",
        description="Run the conversation scenarios through a throwaway copy of the service (real webhook, real "
        "worker, embedded Postgres and Redis) against the offline policy or an OpenAI-compatible model, and print "
        "a scorecard by category (booking, reschedule/cancel, FAQ, screening, compliance, safety, injection, "
        "robustness) with failures, tokens and latency per turn.",
    )
    parser.add_argument("--model", choices=("offline", "openai"), default="offline", help="the model to measure")
    parser.add_argument(
        "--openai-fake",
        action="store_true",
        help="with --model openai: use the local scripted OpenAI-compatible fake (what CI runs), not OPENAI_BASE_URL",
    )
    parser.add_argument("--scenarios", metavar="DIR", help="scenario folder (default: tests/scenarios)")
    parser.add_argument("--only", metavar="NAME,...", help="run only these scenarios (names or name prefixes)")
    parser.add_argument("--json", metavar="PATH", help="also write the scorecard as JSON to PATH")
    parser.add_argument(
        "--fail-under",
        type=float,
        metavar="PCT",
        help="exit 1 when the overall pass rate is below PCT %% or a must-pass category "
        "(safety, screening, compliance, injection) is below 100 %%",
    )
    parser.add_argument("--reply-timeout", type=float, default=60, help="seconds to wait for each reply")
    parser.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    _ensure_repo_on_path()
    from tests.support.scenarios import SCENARIO_DIR, format_scorecard, load_scenarios, scorecard

    directory = Path(args.scenarios) if args.scenarios else SCENARIO_DIR
    if not directory.is_dir():
        raise CommandError(f"no scenario folder {directory}")
    try:
        scenarios = load_scenarios(directory)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        scenarios = [s for s in scenarios if any(s["name"] == w or s["name"].startswith(w) for w in wanted)]
        if not scenarios:
            raise CommandError(f"no scenario matches {args.only}")
    if args.openai_fake and args.model != "openai":
        raise CommandError("--openai-fake goes with --model openai")
    started = datetime.now(UTC)
    clock = time.monotonic()
    results = run_eval(scenarios, model=args.model, openai_fake=args.openai_fake, reply_timeout=args.reply_timeout)
    model_name = args.model if args.model == "offline" else ("openai (local fake)" if args.openai_fake else "openai")
    card = scorecard(results, model=model_name, runner="webhook + worker stack")
    card["date"] = started.strftime("%Y-%m-%d")
    card["duration_s"] = round(time.monotonic() - clock, 1)
    print(f"medspa eval, {started:%Y-%m-%d %H:%M} UTC, {card['duration_s']} s")
    print(format_scorecard(card))
    if args.json:
        Path(args.json).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    if args.fail_under is not None:
        below = (card["overall"]["pass_rate"] or 0) * 100 < args.fail_under
        must = [c for c, rate in card["must_pass"].items() if rate["total"] and rate["passed"] < rate["total"]]
        if below or must:
            return 1
    return 0
