"""The offline policy's understanding for this process: the labelled examples and the local sentence-embedding
model, or — when that model is not installed — keyword rules alone, said once in the log.

One home for how a process builds its NLU: the composition root (``worker/container.py``), the scenario harness
and ``medspa eval`` all call :func:`build_intent_classifier`.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from domain.nlu import IntentClassifier, LabelledExample, parse_examples
from domain.ports import Embedder

log = logging.getLogger(__name__)

EXAMPLES_PATH = Path(__file__).resolve().parents[1] / "domain" / "nlu_examples.yaml"


@cache
def load_examples(path: Path = EXAMPLES_PATH) -> tuple[LabelledExample, ...]:
    return tuple(parse_examples(path.read_text(encoding="utf-8")))


def local_nlu_embedder(existing: Embedder | None, *, allow_local: bool) -> Embedder | None:
    """The local MiniLM model: the process's own if it already runs one, else a new one when installed."""
    from worker.integrations.embedders import LocalMiniLMEmbedder

    if isinstance(existing, LocalMiniLMEmbedder):
        return existing
    if allow_local and LocalMiniLMEmbedder.available():
        return LocalMiniLMEmbedder()
    return None


def build_intent_classifier(
    embedder: Embedder | None, *, warm: bool = False, announce: bool = True
) -> IntentClassifier | None:
    """An intent classifier over the shipped examples, or None (the policy then uses keyword rules)."""
    if embedder is None:
        if announce:
            log.info(
                "offline policy understanding: keyword rules only (the local sentence-embedding model is not "
                "installed or LOCAL_EMBEDDINGS=false); new phrasings are understood less well"
            )
        return None
    classifier = IntentClassifier(load_examples(), embedder)
    if warm:
        classifier.warm()
    if announce:
        log.info(
            "offline policy understanding: nearest labelled examples (%d) with %s",
            len(classifier.examples),
            embedder.name,
        )
    return classifier
