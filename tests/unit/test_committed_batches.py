"""An import's batches (``scripts.csv_import.committed_batches``): Ctrl-C says how far the committed batches got and
stays an interrupt (exit 130), even when it landed mid-statement and the rollback that followed failed."""

from __future__ import annotations

import pytest

from scripts.csv_import import Outcome, Progress, committed_batches


def _outcome(done: int) -> Outcome:
    outcome = Outcome()
    outcome.actions["new"] = done
    return outcome


def test_ctrl_c_between_statements_reports_the_committed_batches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyboardInterrupt), committed_batches(Progress(100, "importing", False), _outcome(50), "client"):
        raise KeyboardInterrupt
    assert "interrupted: 50 client(s) done in committed batches" in capsys.readouterr().out


def test_ctrl_c_whose_rollback_failed_is_still_an_interrupt(capsys: pytest.CaptureFixture[str]) -> None:
    # What the driver does when Ctrl-C lands while a statement runs: the rollback finds the statement still in
    # progress and raises, with the interrupt as its context.
    with pytest.raises(KeyboardInterrupt), committed_batches(Progress(100, "importing", False), _outcome(50), "client"):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("sending query failed: another command is already in progress") from None
    assert "interrupted: 50 client(s)" in capsys.readouterr().out


def test_any_other_error_passes_through_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    with (
        pytest.raises(RuntimeError, match="disk full"),
        committed_batches(Progress(10, "x", False), _outcome(5), "visit"),
    ):
        raise RuntimeError("disk full")
    assert "interrupted" not in capsys.readouterr().out
