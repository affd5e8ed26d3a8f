"""Conversation scenarios (``tests/scenarios/``) through both runners of the one harness
(``tests/support/scenarios/``, also behind ``medspa eval``): the offline policy with its NLU on real Postgres
(direct), and the real webhook and worker (stack).  Offline-only expectations apply: this is the offline policy.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from db.engine import Database
from domain.offline_policy import OfflinePolicy
from domain.ports import Embedder
from tests.support.scenarios import (
    CATEGORIES,
    FAILURE_CLASSES,
    as_pytest_params,
    check_run,
    load_scenarios,
    reset_patient,
    run_scenario_direct,
    run_scenario_stack,
    transcript,
)
from worker.integrations.console import DatabaseOnlyCalendar, LocalTestPayments
from worker.integrations.embedders import LocalMiniLMEmbedder
from worker.knowledge import reindex_missing_embeddings
from worker.understanding import build_intent_classifier

SCENARIOS = load_scenarios()


@pytest.fixture(scope="module")
def scenario_embedder(database: Database) -> Embedder:
    embedder = LocalMiniLMEmbedder()
    for clinic_id in (1, 2):
        reindex_missing_embeddings(database, clinic_id, embedder)
    return embedder


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 30
    phones = [s["patient"]["phone"] for s in SCENARIOS]
    assert len(phones) == len(set(phones)), "each scenario needs its own patient phone"
    assert {s["category"] for s in SCENARIOS} <= set(CATEGORIES)
    assert {s.get("failure_class") for s in SCENARIOS} - {None} <= set(FAILURE_CLASSES)


@pytest.fixture(scope="module")
def offline_policy(scenario_embedder: Embedder) -> OfflinePolicy:
    """The offline policy as the worker builds it: understanding by the shipped examples and the local model."""
    return OfflinePolicy(nlu=build_intent_classifier(scenario_embedder, warm=True, announce=False))


@pytest.mark.parametrize("scenario", as_pytest_params(SCENARIOS))
def test_scenario_direct(
    scenario: dict[str, Any], database: Database, scenario_embedder: Embedder, offline_policy: OfflinePolicy
) -> None:
    run = run_scenario_direct(
        scenario,
        database,
        model=offline_policy,
        payments=LocalTestPayments("http://127.0.0.1:8000"),
        calendar=DatabaseOnlyCalendar(),
        embedder=scenario_embedder,
    )
    try:
        problems = check_run(run, database)
    finally:
        reset_patient(database, run.clinic_id, run.phone)  # free the slots for the next scenario
    if os.environ.get("SCENARIO_VERBOSE"):
        print(f"\n{scenario['name']}\n{transcript(run)}")
    assert not problems, "\n".join(problems) + "\n" + transcript(run)


@pytest.fixture(scope="module")
def scenario_stack(infra: Any, tmp_path_factory: pytest.TempPathFactory, scenario_embedder: Embedder) -> Any:
    from tests.support.stack import running_stack

    with running_stack(
        infra,
        tmp_path_factory.mktemp("scenario-stack"),
        model_provider="offline",
        local_embeddings=True,
        openai_api_key=None,  # embeddings from the local MiniLM model, the same vectors the knowledge base holds
    ) as (stack, _container):
        yield stack


@pytest.mark.parametrize("scenario", as_pytest_params(SCENARIOS))
def test_scenario_through_webhook_and_worker(scenario: dict[str, Any], scenario_stack: Any) -> None:
    run = run_scenario_stack(scenario, scenario_stack)
    try:
        problems = check_run(run, scenario_stack.database)
    finally:
        reset_patient(scenario_stack.database, run.clinic_id, run.phone)
    assert not problems, "\n".join(problems) + "\n" + transcript(run)
