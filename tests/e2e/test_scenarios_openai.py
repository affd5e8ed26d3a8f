"""The same conversation scenarios through the OpenAI path: the real webhook and worker with
``MODEL_PROVIDER=openai``, the official SDK talking HTTP to the local Chat Completions fake, whose answers come
from the offline policy reading only what a real model reads (``tests/support/openai_policy.py``).

What this exercises that the offline runs do not: the wire format of every request (checked by the fake), the
tool schemas the model is offered (every tool call is validated against them), the system prompt carrying what a
model needs (date, time zone, hours, patient, state), and the error path (429s and 500s injected on a schedule
and retried by the adapter) — with the same outcome expectations any competent model must meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.scenarios import (
    as_pytest_params,
    check_run,
    load_scenarios,
    reset_patient,
    run_scenario_stack,
    transcript,
)

SCENARIOS = load_scenarios()


@pytest.fixture(scope="module")
def openai_stack(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support.openai_policy import install_policy_model
    from tests.support.stack import running_stack
    from worker.integrations.embedders import LocalMiniLMEmbedder
    from worker.knowledge import reindex_missing_embeddings

    with running_stack(
        infra,
        tmp_path_factory.mktemp("openai-scenario-stack"),
        model_provider="openai",
        embeddings_provider="local",  # the knowledge base keeps the local vectors the other runs use
        local_embeddings=True,
        # The injected 500s are retried after a random backoff: up to 0.5 s by default, ~80 times in this run.
        # Retried the same way, sooner.
        model_retry_backoff_s=0.02,
    ) as (stack, container):
        assert isinstance(container.embedder, LocalMiniLMEmbedder)
        for clinic_id in (1, 2):
            reindex_missing_embeddings(stack.database, clinic_id, container.embedder)
        violations, injector = install_policy_model(stack.openai, inject_errors=True)
        stack.policy_violations, stack.injector = violations, injector
        yield stack


@pytest.mark.parametrize("scenario", as_pytest_params(SCENARIOS))
def test_scenario_through_the_openai_path(scenario: dict[str, Any], openai_stack: Any) -> None:
    run = run_scenario_stack(scenario, openai_stack)
    try:
        problems = check_run(run, openai_stack.database, offline=False)  # outcome expectations only
    finally:
        reset_patient(openai_stack.database, run.clinic_id, run.phone)
    assert not problems, "\n".join(problems) + "\n" + transcript(run)


def test_the_wire_format_and_tool_schemas_held_and_errors_were_retried(openai_stack: Any) -> None:
    openai_stack.openai.assert_clean()  # every request the SDK sent was well-formed
    assert openai_stack.policy_violations == []  # every tool call fitted the schema offered for it
    injected = openai_stack.injector.injected
    assert "429" in injected and "500" in injected, injected  # and the adapter retried through both
    statuses = openai_stack.openai.statuses()
    assert statuses.count(429) == injected.count("429") and statuses.count(500) == injected.count("500")
