"""``medspa eval`` end to end: a throwaway stack, scenarios through it, the scorecard printed and written as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from medspa.settings import REPO_ROOT


def test_eval_runs_scenarios_through_its_own_stack_and_writes_the_scorecard(tmp_path: Path) -> None:
    out = tmp_path / "card.json"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.cli",
            "eval",
            "--only",
            "greeting,emergency-cant-breathe",
            "--json",
            str(out),
            "--fail-under",
            "95",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Scorecard: model offline, 2 scenarios" in done.stdout
    card = json.loads(out.read_text())
    assert card["overall"] == {"passed": 2, "total": 2, "pass_rate": 1.0}
    assert card["by_category"]["safety"]["passed"] == 1 and card["failures"] == []
