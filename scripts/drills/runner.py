"""Running a drill: the catalogue of drills, per-drill settings, one drill's run against a fresh stack."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scripts.common import CommandError
from scripts.drills.environment import (
    ARTIFACTS,
    RECOVERY_TARGET_S,
    SCALES,
    DrillEnvironment,
    DrillResult,
    Scale,
    _ensure_repo_on_path,
    _progress,
    drill_environment,
)
from scripts.drills.faults import (
    Fault,
    _freeze_redis,
    _model_429_storm,
    _poisoned_batch,
    _restart_postgres,
    _restart_redis,
    _sigkill_worker,
    _sigterm_worker,
    _sms_500s,
)
from scripts.drills.measure import Load, _measure, _wait_recovered
from scripts.drills.slow_providers import _conversation_of, _SlowModelBeyondLease, _SlowSmsProvider

if TYPE_CHECKING:
    from tests.support.stack import ProcessStack


FAULTS: dict[str, Fault] = {
    "sigkill_worker": _sigkill_worker,
    "sigterm_worker": _sigterm_worker,
    "restart_redis": _restart_redis,
    "freeze_redis": _freeze_redis,
    "poisoned_batch": _poisoned_batch,
    "restart_postgres": _restart_postgres,
    "model_429_storm": _model_429_storm,
    "sms_500s": _sms_500s,
    "slow_sms_provider": _SlowSmsProvider(),
    "slow_model_beyond_lease": _SlowModelBeyondLease(),
}
DRILLS = tuple(FAULTS)


# The stack's settings: the scale's recovery timings, and per drill: the model's overall deadline is shorter than
# the 429 storm in that drill, so both paths run — turns that outlast the storm within the deadline, and turns
# that apologise and hand off; the slow model's drill has the short lease its model outlives.
def _overrides(name: str, scale: Scale) -> dict[str, Any]:
    overrides = scale.stack_settings()
    if name == "model_429_storm":
        overrides["model_deadline_s"] = round(scale.storm_s * 0.6, 1)
    if name == "slow_model_beyond_lease":
        overrides["lease_seconds"] = scale.slow_model_lease_s
    return overrides


# Drills whose fault lives longer than one call (a campaign to follow, a model to watch): a fresh one per run.
_STATEFUL: dict[str, Callable[[], Fault]] = {
    "slow_sms_provider": _SlowSmsProvider,
    "slow_model_beyond_lease": _SlowModelBeyondLease,
}


def run_drill(env: DrillEnvironment, name: str, scale: Scale | str = "small") -> DrillResult:
    """Run one drill on a fresh stack over ``env``; never raises for a missed target (see ``passed``)."""
    _ensure_repo_on_path()
    from tests.support.stack import echo_responder, running_process_stack

    if name not in FAULTS:
        raise CommandError(f"unknown drill {name!r} (drills: {', '.join(DRILLS)})")
    scale = SCALES[scale] if isinstance(scale, str) else scale
    result = DrillResult(name)
    work = env.work_dir / f"{name}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    think_s = scale.model_ms / 1000
    fault: Fault = _STATEFUL[name]() if name in _STATEFUL else FAULTS[name]
    model = fault if isinstance(fault, _SlowModelBeyondLease) else None

    def slow_echo(body: dict[str, Any]) -> dict[str, Any]:
        if model is None:
            time.sleep(think_s)  # the scripted model's think time
            return echo_responder(body)
        conversation = _conversation_of(body)
        with model.call(conversation):
            time.sleep(model.think_s(conversation, think_s, scale))  # the scripted model's think time
            return echo_responder(body)

    _progress(f"{name}: starting a stack (app, 2 worker groups, scheduler)")
    with running_process_stack(
        env.infra, work, workers=((1, 4), (1, 4)), scheduler=True, **_overrides(name, scale)
    ) as procs:
        procs.stack.openai.responder = slow_echo
        load = Load(procs, scale).start()
        try:
            load.wait_under_way()
            victim = procs.workers[0].pids() if name in ("sigkill_worker", "sigterm_worker") else None
            in_flight = _wait_in_flight(procs, victim)
            result.notes.append(
                f"at the fault: {in_flight} turns in flight" + (" on the victim" if victim is not None else "")
            )
            _progress(f"{name}: load under way, injecting the fault")
            if model is not None:
                model.load = load
            cleared = fault(procs, env, scale, result)
            _progress(f"{name}: fault cleared, waiting for recovery")
            recovered = _wait_recovered(
                procs, load, timeout=RECOVERY_TARGET_S + 60, settled=getattr(fault, "settled", None)
            )
        except BaseException:
            with contextlib.suppress(Exception):
                load.join()
            raise
        if recovered is not None:
            result.recovery_s = max(0.0, recovered - cleared)
        else:
            result.notes.append(f"not recovered: {_state(procs)}")
        _measure(procs, load, result)
        if hasattr(fault, "measure"):
            fault.measure(procs, result)
        if not result.passed:
            kept = ARTIFACTS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
            shutil.copytree(procs.log_dir, kept, dirs_exist_ok=True)
            result.notes.append(f"process logs kept in {kept}")
    _progress(f"{name}: {result.verdict} {result.row()} {'; '.join(result.notes)}")
    return result


def _wait_in_flight(procs: ProcessStack, pids: list[int] | None, timeout: float = 15) -> int:
    """Best effort: until some conversation's lease is held (by one of ``pids`` when given), so the fault
    lands on turns in flight.  Returns how many were; 0 when the load never got there within ``timeout``."""
    from sqlalchemy import text

    owners = [f"%:{pid}" for pid in pids] if pids is not None else ["%"]
    deadline = time.monotonic() + timeout
    while True:
        with procs.stack.database.tenant_scope(1) as session:
            count = int(
                session.execute(
                    text(
                        """SELECT count(*) FROM conversations WHERE lease_owner LIKE ANY(:owners)
                   AND lease_expires_at > now()"""
                    ),
                    {"owners": owners},
                ).scalar_one()
            )
        if count or time.monotonic() >= deadline:
            return count
        time.sleep(0.01)  # polling a condition with a deadline


def _state(procs: ProcessStack) -> Any:
    with contextlib.suppress(Exception):
        return procs.stack.pipeline_state()
    return "unavailable"


def run_drills(names: list[str], scale: str) -> list[DrillResult]:
    results: list[DrillResult] = []
    with drill_environment() as env:
        for name in names:
            results.append(run_drill(env, name, scale))
    return results
