"""Work the console hands to the workers after a change commits: enqueued by actor name
(``medspa.broker.message_for``), as the webhook app and the commands do — the console never imports an actor.

Best effort by design, each with a backstop: a campaign set sending is started by the scheduler's campaign tick
within 30 s anyway (this only saves the wait); an article's missing embeddings are filled by the next
``embed_kb_document`` of it, ``medspa kb ingest`` or ``medspa dev`` (until then it is found by full text).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from medspa.broker import BULK_QUEUE, build_broker, message_for

log = logging.getLogger(__name__)
ENQUEUE_TIMEOUT_S = 2.0

_brokers: dict[str, Any] = {}
_lock = threading.Lock()


def _broker(redis_url: str) -> Any:
    with _lock:
        if redis_url not in _brokers:
            _brokers[redis_url] = build_broker(redis_url, socket_timeout=ENQUEUE_TIMEOUT_S)
        return _brokers[redis_url]


def _enqueue(redis_url: str | None, actor_name: str, queue_name: str, *args: Any) -> bool:
    if not redis_url:
        log.warning("console follow-up not enqueued: no REDIS_URL", extra={"actor": actor_name})
        return False
    try:
        _broker(redis_url).enqueue(message_for(actor_name, queue_name, *args))
    except Exception as exc:  # noqa: BLE001 - Redis down: the backstop picks the work up
        log.warning("console follow-up not enqueued", extra={"actor": actor_name, "error": type(exc).__name__})
        return False
    return True


def start_campaign_runner(redis_url: str | None, clinic_id: int, campaign_id: int) -> bool:
    return _enqueue(redis_url, "run_campaign_slice", BULK_QUEUE, clinic_id, campaign_id)


def embed_article(redis_url: str | None, clinic_id: int, document_id: int) -> bool:
    return _enqueue(redis_url, "embed_kb_document", BULK_QUEUE, clinic_id, document_id)
