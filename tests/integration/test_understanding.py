"""The offline policy's understanding with the shipped local sentence-embedding model (no network), and the honest
keyword fallback when it is not there."""

from __future__ import annotations

import logging

import pytest

from worker.integrations.embedders import LocalMiniLMEmbedder
from worker.understanding import build_intent_classifier, local_nlu_embedder

needs_minilm = pytest.mark.skipif(not LocalMiniLMEmbedder.available(), reason="the 'embeddings' extra is not installed")


@pytest.fixture(scope="module")
def classifier():  # noqa: ANN201
    return build_intent_classifier(LocalMiniLMEmbedder(), warm=True, announce=False)


# Phrasings in neither the examples file nor the scenarios: the point is generalisation.
@needs_minilm
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("could you squeeze me in for some tox on monday", "book"),
        ("I won't be able to come on friday, please call it off", "cancel"),
        ("is it possible to shift my visit to another day", "reschedule"),
        ("how pricey is a hydrafacial these days", "price"),
        ("where exactly are you guys located", "faq"),
        ("thanks a bunch!", "thanks"),
        ("I will take the first time you listed", "choose"),
        ("could I get a human on the line", "handoff"),
        ("when am I coming in again?", "my_appointments"),
    ],
)
def test_new_phrasings_land_on_their_intent(classifier, text: str, label: str) -> None:  # noqa: ANN001
    understood = classifier.classify(text)
    assert understood.label == label, (understood, classifier.nearest(text))


@needs_minilm
def test_nonsense_has_no_confident_label(classifier) -> None:  # noqa: ANN001
    assert classifier.classify("purple monkey dishwasher 42").label is None


def test_without_the_model_the_policy_says_it_runs_on_keywords(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.understanding")
    assert local_nlu_embedder(None, allow_local=False) is None
    assert build_intent_classifier(None) is None
    assert len(caplog.records) == 1 and "keyword rules only" in caplog.text
