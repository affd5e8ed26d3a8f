"""Understanding by nearest labelled examples: the data file, the held-out split, the classifier's mechanics."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence

import pytest

from domain.nlu import LABELS, IntentClassifier, LabelledExample, normalise, parse_examples
from tests.support.scenarios import load_scenarios, patient_messages
from worker.understanding import EXAMPLES_PATH, load_examples


class BagOfWords:
    """A deterministic stand-in for the sentence model: hashed word counts, unit length (no model, no I/O)."""

    name = "test:bag-of-words"
    dimensions = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        out = []
        for text in texts:
            vector = [0.0] * self.dimensions
            for word in normalise(text).split():
                vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            out.append([v / norm for v in vector])
        return out


def test_the_examples_file_parses_with_a_few_dozen_examples_per_intent() -> None:
    examples = load_examples(EXAMPLES_PATH)
    counts = Counter(e.label for e in examples)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 10, counts
    assert len(examples) == len({(normalise(e.text), e.label) for e in examples}), "duplicate examples"


def test_unknown_labels_are_an_error() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        parse_examples("book:\n  - hi\nbooking:\n  - book me in\n")


def test_held_out_scenarios_are_not_in_the_examples() -> None:
    """The scorecard's held-out score must measure generalisation: no held-out patient message (other than ones
    the seen scenarios also use, like a bare "yes") is an NLU example."""
    scenarios = load_scenarios()
    held_out = [s for s in scenarios if s.get("held_out")]
    assert len(held_out) >= 30
    seen = {normalise(m) for s in scenarios if not s.get("held_out") for m in patient_messages(s)}
    examples = {normalise(e.text) for e in load_examples(EXAMPLES_PATH)}
    held = {normalise(m) for s in held_out for m in patient_messages(s)}
    leaked = sorted((held - seen) & examples)
    assert leaked == [], f"held-out messages copied into {EXAMPLES_PATH.name}: {leaked}"


def test_every_failure_class_and_category_has_held_out_scenarios() -> None:
    scenarios = load_scenarios()
    held_classes = {s.get("failure_class") for s in scenarios if s.get("held_out")}
    assert held_classes >= {
        "screening",
        "confirmation",
        "question_not_booking",
        "relative_time",
        "direct_answer",
        "names",
        "safety_language",
        "multi_topic",
    }


EXAMPLES = [
    LabelledExample("book an appointment for botox", "book"),
    LabelledExample("schedule a facial", "book"),
    LabelledExample("cancel my appointment", "cancel"),
    LabelledExample("where do i park", "faq"),
    LabelledExample("thank you so much", "thanks"),
]


def test_the_nearest_examples_label_wins() -> None:
    classifier = IntentClassifier(EXAMPLES, BagOfWords(), threshold=0.3)
    assert classifier.classify("please cancel my appointment tomorrow").label == "cancel"
    assert classifier.classify("can I book botox").label == "book"
    assert classifier.classify("thank you").label == "thanks"


def test_below_the_threshold_there_is_no_label_but_an_honest_runner_up() -> None:
    understood = IntentClassifier(EXAMPLES, BagOfWords(), threshold=0.9).classify("zzz qqq")
    assert understood.label is None and understood.confidence < 0.9 and understood.source == "embeddings"


def test_allowed_labels_restrict_the_choice() -> None:
    classifier = IntentClassifier(EXAMPLES, BagOfWords(), threshold=0.0)
    assert classifier.classify("cancel my appointment", allowed=["book", "faq"]).label in ("book", "faq")


def test_example_vectors_are_computed_once_per_process() -> None:
    embedder = BagOfWords()
    examples = [*EXAMPLES, LabelledExample("a fresh example for this test only", "faq")]
    first = IntentClassifier(examples, embedder)
    first.classify("hello")
    calls_after_first = embedder.calls
    second = IntentClassifier(examples, embedder)  # another policy in the same process
    second.classify("goodbye")
    assert calls_after_first == 2  # the examples once, the message once
    assert embedder.calls == calls_after_first + 1  # only the new message


def test_recent_messages_are_cached() -> None:
    embedder = BagOfWords()
    classifier = IntentClassifier(EXAMPLES, embedder)
    classifier.classify("where do i park")
    calls = embedder.calls
    classifier.classify("where do i park")
    assert embedder.calls == calls
