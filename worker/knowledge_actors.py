"""Actors for the knowledge base: a thin wrapper over ``worker.knowledge``.

- ``embed_kb_document``: embeds the chunks of one article that have no embedding from the process's embedder
  (``reindex_missing_embeddings``, the path ``medspa kb ingest`` and ``medspa dev`` use).  Enqueued by the staff
  console after it saved an article (the console never loads an embedding model); idempotent — an article
  embedded already, deleted since, or a worker without an embedder, is a no-op.
"""

from __future__ import annotations

import logging

from medspa.broker import BULK_QUEUE
from worker.knowledge import reindex_missing_embeddings
from worker.runtime import actor, container

log = logging.getLogger(__name__)


# Retried: the embedder (OpenAI) may be briefly down; a retry embeds only what is still missing.
@actor(queue_name=BULK_QUEUE, max_retries=5, min_backoff=2_000, max_backoff=120_000, time_limit=300_000)
def embed_kb_document(clinic_id: int, document_id: int) -> None:
    c = container()
    embedded = reindex_missing_embeddings(c.database, clinic_id, c.embedder, document_id=document_id)
    log.info("kb document embedded", extra={"clinic_id": clinic_id, "document_id": document_id, "chunks": embedded})
