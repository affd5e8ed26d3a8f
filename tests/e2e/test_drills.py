"""The fault drills of `medspa drills run`, at the small scale: each breaks a running stack mid-load (worker
killed or stopped, Redis restarted empty or frozen, requests Postgres would refuse, Postgres restarted, model 429
storm, SMS provider 500s, a slow SMS provider during a campaign, a model slower than the conversation lease) and
checks what patients saw — nothing lost, no reply twice, recovered within the target.

The two slowest carry the ``slow`` marker (they still run in CI).  The drills restart Redis and Postgres,
so they run on their own throwaway infrastructure (one for this module), never on the session's shared one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.drills import RECOVERY_TARGET_S, DrillEnvironment, DrillResult, drill_environment, run_drill


@pytest.fixture(scope="module")
def drills_env() -> Iterator[DrillEnvironment]:
    with drill_environment() as env:
        yield env


def _check(result: DrillResult, *, messages_in: int = 8 * 3) -> None:
    detail = f"{result.row()} {result.notes}"
    assert result.messages_in == messages_in, detail  # every patient message was acknowledged by the webhook
    assert result.lost == 0, detail
    assert result.duplicates == 0, detail
    assert result.recovery_s is not None and result.recovery_s <= RECOVERY_TARGET_S, detail
    assert result.turns > 0 and result.replies_sent > 0, detail
    assert result.passed, detail


def test_sigkill_of_a_worker_group(drills_env):
    _check(run_drill(drills_env, "sigkill_worker", "small"))


def test_sigterm_of_a_worker_group(drills_env):
    result = run_drill(drills_env, "sigterm_worker", "small")
    _check(result)
    assert any("exited 0" in note for note in result.notes), result.notes  # a graceful stop, not a kill


@pytest.mark.slow
def test_redis_restarted_empty(drills_env):
    _check(run_drill(drills_env, "restart_redis", "small"))


def test_redis_frozen(drills_env):
    result = run_drill(drills_env, "freeze_redis", "small")
    _check(result)
    # A hung Redis must not cost a single acknowledgement: every text was 2xx (recorded) at its first attempt.
    assert not any("not 2xx the first time" in note for note in result.notes), result.notes


def test_poisoned_requests_fail_alone(drills_env):
    result = run_drill(drills_env, "poisoned_batch", "small")
    _check(result)
    assert not result.violations, result.violations  # every poisoned request 400, every bystander recorded
    assert any("poisoned requests alongside" in note for note in result.notes), result.notes


def test_postgres_restarted(drills_env):
    _check(run_drill(drills_env, "restart_postgres", "small"))


def test_model_429_storm(drills_env):
    result = run_drill(drills_env, "model_429_storm", "small")
    _check(result)
    assert any("model answered 429" in note for note in result.notes), result.notes


@pytest.mark.slow
def test_sms_provider_500s(drills_env):
    result = run_drill(drills_env, "sms_500s", "small")
    _check(result)
    # Every reply the turns produced reached the patient exactly once.
    assert result.replies_sent == result.turns, result.row()


def test_slow_sms_provider_during_a_campaign_sends_each_text_once(drills_env):
    """Twilio takes 2 s per call while a campaign sends: chunks of claimed rows outlive the sweeper's deadline.
    Every campaign recipient gets exactly one text (and the patients' replies exactly once)."""
    result = run_drill(drills_env, "slow_sms_provider", "small")
    _check(result, messages_in=8 * 3 + 8 * 5)  # the patients' messages and the campaign's texts
    assert "campaign: 40 recipients, 0 never texted, 0 texted twice" in result.notes, result.notes


def test_slow_model_beyond_lease_runs_one_turn_per_conversation_at_a_time(drills_env):
    """One patient's model takes twice the lease per call: no second turn of that conversation starts while the
    first runs (the lease is renewed), and nothing is lost or answered twice."""
    result = run_drill(drills_env, "slow_model_beyond_lease", "small")
    _check(result)
    assert result.parallel_turns == 0, result.notes


def test_the_command_runs_the_named_drills_and_rejects_unknown_ones(capsys):
    from scripts.cli import main

    assert main(["drills", "run", "--only", "no_such_drill"]) == 2
    assert "unknown drill(s) no_such_drill" in capsys.readouterr().err
