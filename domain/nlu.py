"""Understanding patient messages by their nearest labelled examples (sentence embeddings), with a fallback.

Why examples and not more keywords: keyword rules do not generalise — "is there parking for my appointment?"
contains booking words, "yep go ahead and cancel" contains the cancel word, "I'm pregnant" starts like an
introduction.  A small sentence-embedding model (all-MiniLM-L6-v2, shipped in a wheel, run locally) places a
new message near the examples that mean the same thing, the way Rasa's NLU is trained on example utterances.
Classification is k-nearest-neighbours over the labelled examples of ``nlu_examples.yaml`` with a confidence
threshold: below it the label is ``None`` and the caller falls back honestly (keyword rules, then "I'm not
sure I understood").  Slots (service, date, time, a choice from a list) are not classified here: the
deterministic parsers (``timeparse``, ``catalog``) read them against the dialogue state.

The embedder is a port (``domain.ports.Embedder``) injected by the composition root; example vectors are
computed once per process per embedder (module cache) — nothing is downloaded or precomputed elsewhere.
Pure: no I/O here; ``parse_examples`` takes the file's text.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from domain.ports import Embedder

# Labels the examples file may use: intents, and the dialogue acts of a reply to the agent.
LABELS: tuple[str, ...] = (
    "book",
    "reschedule",
    "cancel",
    "my_appointments",
    "price",
    "service_info",
    "faq",
    "hours",
    "menu",
    "handoff",
    "greeting",
    "thanks",
    "confirm",  # act: yes to a proposal
    "deny",  # act: no / not now
    "choose",  # act: choose from the list offered
    "give_time",  # act: a date or time, possibly relative ("an hour earlier")
    "give_name",  # act: the patient's name
    "other_person",  # asks about someone else's details
    "symptom",  # reports a problem after a treatment
    "smalltalk",
)
DEFAULT_THRESHOLD = 0.55  # cosine similarity; MiniLM puts paraphrases around 0.6-0.9, unrelated text below 0.35
DEFAULT_K = 5


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str


@dataclass(frozen=True)
class Understanding:
    """What a message is: the label (None below the threshold), how sure, from which source, and the runner-up."""

    label: str | None
    confidence: float
    source: str  # "embeddings" | "keywords" | "none"
    runner_up: str | None = None
    runner_up_confidence: float = 0.0

    def is_(self, *labels: str) -> bool:
        return self.label in labels


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces (for comparing messages and examples)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().replace("\u2019", "'")
    plain = plain.replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


def parse_examples(text: str) -> list[LabelledExample]:
    """The examples file (YAML: label -> list of utterances); unknown labels are an error."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("NLU examples: expected a mapping of label to utterances")
    examples: list[LabelledExample] = []
    for label, utterances in data.items():
        if label not in LABELS:
            raise ValueError(f"NLU examples: unknown label {label!r} (labels: {', '.join(LABELS)})")
        for utterance in utterances or ():
            if str(utterance).strip():
                examples.append(LabelledExample(str(utterance).strip(), str(label)))
    return examples


# ---------------------------------------------------------------------------------------------- embeddings cache
_MATRICES: dict[tuple[str, str], np.ndarray] = {}
_MATRIX_LOCK = threading.Lock()


def _digest(examples: Sequence[LabelledExample]) -> str:
    h = hashlib.sha256()
    for example in examples:
        h.update(f"{example.label}\x00{example.text}\x01".encode())
    return h.hexdigest()


def _unit_rows(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        matrix = matrix.reshape(len(vectors), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = matrix / norms
    return unit


class IntentClassifier:
    """k-nearest-neighbour classification of a message over labelled example embeddings."""

    def __init__(
        self,
        examples: Sequence[LabelledExample],
        embedder: Embedder,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        k: int = DEFAULT_K,
        cache_size: int = 2048,
    ) -> None:
        if not examples:
            raise ValueError("IntentClassifier needs examples")
        self.examples = tuple(examples)
        self.embedder = embedder
        self.threshold = threshold
        self.k = k
        self._labels = np.asarray([e.label for e in self.examples])
        self._key = (getattr(embedder, "name", type(embedder).__name__), _digest(self.examples))
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"knn:{self._key[0]}"

    # -- vectors
    def _matrix(self) -> np.ndarray:
        matrix = _MATRICES.get(self._key)
        if matrix is None:
            with _MATRIX_LOCK:
                matrix = _MATRICES.get(self._key)
                if matrix is None:  # once per process per embedder and example set
                    matrix = _unit_rows(self.embedder.embed([e.text for e in self.examples]))
                    _MATRICES[self._key] = matrix
        return matrix

    def warm(self) -> None:
        """Compute the example vectors now (at worker start) rather than on the first message."""
        self._matrix()

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (recently seen texts come from a small cache)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            fresh = _unit_rows(self.embedder.embed(missing))
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._texts[text] = vector
                while len(self._texts) > self._cache_size:
                    self._texts.popitem(last=False)
        with self._lock:
            return np.stack([self._texts[t] if t in self._texts else np.zeros(1) for t in texts])

    def similarities(self, query: str, candidates: Sequence[str]) -> list[float]:
        """Cosine similarity of ``query`` to each candidate (sentence ranking for answers)."""
        if not candidates:
            return []
        vectors = self.vectors([query, *candidates])
        return [float(v) for v in vectors[1:] @ vectors[0]]

    # -- classification
    def classify(self, text: str, allowed: Sequence[str] | None = None) -> Understanding:
        """The label of the examples nearest to ``text`` (optionally among ``allowed`` labels only)."""
        if not text.strip():
            return Understanding(None, 0.0, "none")
        matrix = self._matrix()
        query = self.vectors([text])[0]
        scores = matrix @ query
        labels = self._labels
        if allowed is not None:
            mask = np.isin(labels, list(allowed))
            if not mask.any():
                return Understanding(None, 0.0, "none")
            scores, labels = scores[mask], labels[mask]
        order = np.argsort(-scores)[: self.k]
        # Score per label: its best neighbour, plus a small weight for agreement among the k nearest.
        per_label: dict[str, float] = {}
        for rank, index in enumerate(order):
            label = str(labels[index])
            score = float(scores[index])
            if label not in per_label:
                per_label[label] = score
            else:
                per_label[label] += 0.05 * score / (rank + 1)
        ranked = sorted(per_label.items(), key=lambda kv: -kv[1])
        best_label, best = ranked[0]
        best_similarity = float(max(float(scores[i]) for i in order if str(labels[i]) == best_label))
        runner_up, second = (ranked[1][0], ranked[1][1]) if len(ranked) > 1 else (None, 0.0)
        if best_similarity < self.threshold:
            return Understanding(None, best_similarity, "embeddings", best_label, best)
        return Understanding(best_label, best_similarity, "embeddings", runner_up, second)

    def nearest(self, text: str, n: int = 3) -> list[tuple[str, str, float]]:
        """The ``n`` nearest examples (label, text, similarity): for debugging and the docs."""
        matrix = self._matrix()
        scores = matrix @ self.vectors([text])[0]
        order = np.argsort(-scores)[:n]
        return [(self.examples[i].label, self.examples[i].text, float(scores[i])) for i in order]


def describe(understanding: Understanding) -> dict[str, Any]:
    return {
        "label": understanding.label,
        "confidence": round(understanding.confidence, 3),
        "source": understanding.source,
        "runner_up": understanding.runner_up,
    }
