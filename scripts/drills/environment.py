"""The drills' environment and results: scales, targets, the result row, a throwaway stack's folder."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medspa.settings import REPO_ROOT

if TYPE_CHECKING:
    from medspa.services import Infrastructure

RECOVERY_TARGET_S = 90.0
ACK_TARGET_S = 2.0  # drills that must acknowledge every text at once (FIRST_TRY_ACK): the slowest 2xx allowed
ARTIFACTS = REPO_ROOT / "test-artifacts" / "drills"  # git-ignored: process logs of drills that failed
COLUMNS = ["drill", "messages in", "turns", "replies sent", "duplicates", "lost", "recovery time (s)", "verdict"]


@dataclass(frozen=True)
class Scale:
    conversations: int
    per_conversation: int
    load_s: float  # each conversation's messages are spread over this long, so the fault lands mid-load
    storm_s: float  # how long a provider storm (429s, 500s) or an outage lasts
    model_ms: int  # the scripted model's think time per call: keeps turns in flight when the fault lands
    # The stack's recovery timings (its settings): how long a dead worker's conversations stay leased, when the
    # sweeper takes back unfinished inbound events and outbox rows, and how often it runs.  They bound every
    # drill's recovery time; the checks are the same at any value.
    lease_s: int
    inbox_sweep_after_s: int
    outbox_sweep_after_s: int
    sms_send_timeout_s: float  # below outbox_sweep_after_s (a send's claim must outlive its provider call)
    sweep_every_s: int
    slow_model_lease_s: int  # slow_model_beyond_lease: the lease its slow model outlives (each call takes twice)

    def stack_settings(self) -> dict[str, Any]:
        return {
            "lease_seconds": self.lease_s,
            "inbox_sweep_after_s": self.inbox_sweep_after_s,
            "outbox_sweep_after_s": self.outbox_sweep_after_s,
            "sms_send_timeout_s": self.sms_send_timeout_s,
            "sweep_every_s": self.sweep_every_s,
        }


SCALES = {
    # The test suite's (tests/e2e/test_drills.py): few patients and short recovery timings, so all ten drills
    # take a few minutes; the same faults and the same checks as at full scale.
    "small": Scale(
        conversations=8,
        per_conversation=3,
        load_s=4.0,
        storm_s=4.0,
        model_ms=250,
        lease_s=5,
        inbox_sweep_after_s=5,
        outbox_sweep_after_s=6,
        sms_send_timeout_s=4.0,
        sweep_every_s=2,
        slow_model_lease_s=3,
    ),
    # `medspa drills run`: the test harness's timings (tests/support/stack.py), the scheduler's 10 s sweep.
    "full": Scale(
        conversations=40,
        per_conversation=5,
        load_s=10.0,
        storm_s=10.0,
        model_ms=200,
        lease_s=15,
        inbox_sweep_after_s=20,
        outbox_sweep_after_s=15,
        sms_send_timeout_s=10.0,
        sweep_every_s=10,
        slow_model_lease_s=5,
    ),
}


@dataclass
class DrillResult:
    drill: str
    messages_in: int = 0
    turns: int = 0
    replies_sent: int = 0
    duplicates: int = 0
    lost: int = 0
    recovery_s: float | None = None
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    parallel_turns: int | None = None  # slow_model_beyond_lease: model calls started while one of the same ran
    violations: list[str] = field(default_factory=list)  # what a fault's own checks found wrong (fails the drill)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def row(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "messages in": self.messages_in,
            "turns": self.turns,
            "replies sent": self.replies_sent,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "recovery time (s)": "-" if self.recovery_s is None else f"{self.recovery_s:.1f}",
            "verdict": self.verdict,
        }

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class DrillEnvironment:
    """The throwaway Postgres + Redis every drill's stack runs on (``data_dir`` holds their files)."""

    infra: Infrastructure
    data_dir: Path
    work_dir: Path


def _progress(message: str) -> None:
    print(f"[drills {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ environment
def _ensure_repo_on_path() -> None:
    # The harness lives in tests/ (not an installed package): importable from the checkout.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


@contextlib.contextmanager
def drill_environment() -> Iterator[DrillEnvironment]:
    _ensure_repo_on_path()
    import tempfile

    from tests.support.infra import start_test_infrastructure, stop_test_infrastructure

    infra, data_dir = start_test_infrastructure()
    work_dir = Path(tempfile.mkdtemp(prefix="medspa-drills-"))
    try:
        yield DrillEnvironment(infra, data_dir, work_dir)
    finally:
        stop_test_infrastructure(data_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


# Drills in which no webhook may answer anything but 2xx, even once: the fault is not the database's (Redis is
# only ever best effort on the request path), so a patient's text must be recorded at its first attempt.
FIRST_TRY_ACK = frozenset({"restart_redis", "freeze_redis", "poisoned_batch"})
