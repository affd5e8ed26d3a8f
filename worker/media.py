"""Photos patients text: recorded with their message, fetched from the provider and stored by a worker.

The webhook records only the provider's media URLs (in the inbox payload: nothing slow or outside before the 2xx).
Attaching the message (``worker/conversations.py``) inserts one ``message_media`` row per photo, linked to the
message, and the ``fetch_message_media`` actor then fetches each with the account's credentials
(``worker/integrations/twilio_media.py``) and puts it in the media store (``MEDIA_STORAGE``: a local folder or
S3-compatible storage).  Idempotent: a row is fetched while ``pending`` and finished once (``stored`` or
``failed``); the sweeper hands a row still pending after the inbox deadline to a worker again.

The model never sees a photo unless the clinic enables a vision model (``domain.media.vision_enabled``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.engine import Database
from domain.media import (
    FAILED,
    MAX_IMAGES_PER_TURN,
    MAX_MEDIA_PER_MESSAGE,
    PENDING,
    STORED,
    VISION_TYPES,
    storable_type,
)
from domain.ports import MediaFetcher, MediaFetchError, MediaStore

log = logging.getLogger(__name__)

MAX_FETCH_ATTEMPTS = 6

# Attach's statement (pipeline mode, the attaching transaction): the media of one inbound message, linked to the
# message the same transaction just inserted (found by its conversation and inbound seq).
INSERT_MEDIA = """
INSERT INTO message_media (clinic_id, conversation_id, message_id, inbox_id, position, provider_url, content_type)
SELECT %(clinic)s, m.conversation_id, m.id, %(inbox)s, u.position - 1, u.url, u.content_type
FROM messages m, unnest(%(urls)s::text[], %(types)s::text[]) WITH ORDINALITY AS u(url, content_type, position)
WHERE m.conversation_id = %(conversation)s AND m.inbound_seq = %(seq)s
ON CONFLICT (clinic_id, inbox_id, position) DO NOTHING
RETURNING id
"""
_ROW = "SELECT conversation_id, provider_url, content_type, status, attempts, storage_key FROM message_media WHERE id = :id"
_STORED = """
UPDATE message_media SET status = :stored, storage_key = :key, size_bytes = :size, sha256 = :sha,
       content_type = :type, stored_at = now(), attempts = attempts + 1, last_error = ''
WHERE id = :id AND status = :pending
"""
_FAILED = """
UPDATE message_media SET status = CASE WHEN :final OR attempts + 1 >= :max THEN :failed ELSE status END,
       attempts = attempts + 1, last_error = :error
WHERE id = :id AND status = :pending
RETURNING status
"""
_STALE_PENDING = """
UPDATE message_media SET swept_at = now()
WHERE id IN (SELECT id FROM message_media WHERE status = 'pending'
               AND created_at < now() - make_interval(secs => :after)
               AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => :after))
             ORDER BY id LIMIT :batch)
RETURNING id
"""
# Staff reads: a conversation's photos (``medspa staff show``).
MEDIA_OF_CONVERSATION = """
SELECT id, message_id, position, content_type, status, storage_key, size_bytes, created_at
FROM message_media WHERE conversation_id = :conversation_id ORDER BY message_id, position
"""


def media_params(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The media URLs and declared content types an inbound SMS payload carries (the webhook's ``media``)."""
    urls: list[str] = []
    types: list[str] = []
    for item in (payload.get("media") or [])[:MAX_MEDIA_PER_MESSAGE]:
        if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
            urls.append(item["url"])
            types.append(str(item.get("content_type") or "")[:100])
    return urls, types


def media_key(clinic_id: int, conversation_id: int, media_id: int, extension: str) -> str:
    return f"{clinic_id}/{conversation_id}/{media_id}{extension}"


class RetryFetch(Exception):
    """The provider could not hand the media over now: the actor retries with backoff (the row stays pending)."""


@dataclass(frozen=True)
class FetchOutcome:
    status: str  # stored | failed | pending (already handled elsewhere or not found: the row's status)
    storage_key: str | None = None


def fetch_and_store(
    database: Database,
    fetcher: MediaFetcher | None,
    store: MediaStore,
    clinic_id: int,
    media_id: int,
    *,
    max_bytes: int,
) -> FetchOutcome:
    """Fetch one recorded media row from the provider and store it.  Raises ``RetryFetch`` on a retryable
    provider error (the row stays pending, its attempt counted)."""
    with database.tenant_scope(clinic_id) as session:
        row = session.execute(text(_ROW), {"id": media_id}).mappings().one_or_none()
    if row is None:
        return FetchOutcome("missing")
    if row["status"] != PENDING:
        # Handled elsewhere — e.g. the media actor stored it while a turn of a vision clinic was about to fetch it:
        # the key goes back with the status, or that turn would leave the photo out.
        return FetchOutcome(str(row["status"]), row["storage_key"])
    if fetcher is None:
        return _fail(database, clinic_id, media_id, "twilio is not configured (no account credentials)", final=True)
    try:
        fetched = fetcher.fetch(str(row["provider_url"]), max_bytes=max_bytes)
    except MediaFetchError as exc:
        outcome = _fail(database, clinic_id, media_id, str(exc), final=not exc.retryable)
        if outcome.status == PENDING:
            raise RetryFetch(str(exc)) from exc
        return outcome
    content_type = fetched.content_type or str(row["content_type"])
    extension = storable_type(content_type)
    if extension is None:
        return _fail(database, clinic_id, media_id, "not an image type we keep", final=True)
    key = media_key(clinic_id, int(row["conversation_id"]), media_id, extension)
    store.put(key, fetched.data, content_type)
    with database.tenant_scope(clinic_id) as session:
        session.execute(
            text(_STORED),
            {
                "id": media_id,
                "key": key,
                "size": len(fetched.data),
                "sha": hashlib.sha256(fetched.data).hexdigest(),
                "type": content_type[:100],
                "stored": STORED,
                "pending": PENDING,
            },
        )
    log.info("media stored", extra={"clinic_id": clinic_id, "media_id": media_id, "bytes": len(fetched.data)})
    return FetchOutcome(STORED, key)


def _fail(database: Database, clinic_id: int, media_id: int, error: str, *, final: bool) -> FetchOutcome:
    with database.tenant_scope(clinic_id) as session:
        status = session.execute(
            text(_FAILED),
            {
                "id": media_id,
                "final": final,
                "max": MAX_FETCH_ATTEMPTS,
                "failed": FAILED,
                "pending": PENDING,
                "error": error[:200],
            },
        ).scalar_one_or_none()
    log.warning(
        "media fetch failed", extra={"clinic_id": clinic_id, "media_id": media_id, "error": error, "final": final}
    )
    return FetchOutcome(str(status or FAILED))


_OF_INBOX_EVENTS = """
SELECT id, status, storage_key, content_type FROM message_media
WHERE inbox_id = ANY(CAST(:inbox_ids AS bigint[])) ORDER BY inbox_id, position
"""


def images_for_model(
    database: Database,
    fetcher: MediaFetcher | None,
    store: MediaStore,
    clinic_id: int,
    inbox_ids: list[int],
    *,
    max_bytes: int,
) -> tuple[str, ...]:
    """The photos of a turn's messages as data: URLs, for a clinic that enabled a vision model (the caller checks
    ``domain.media.vision_enabled``).  A photo not fetched yet is fetched now (idempotent: the actor then finds
    it stored); one that cannot be fetched, or is not a type a model reads, is left out."""
    with database.tenant_scope(clinic_id) as session:
        rows = [dict(r) for r in session.execute(text(_OF_INBOX_EVENTS), {"inbox_ids": inbox_ids}).mappings()]
    images: list[str] = []
    for row in rows[:MAX_IMAGES_PER_TURN]:
        key, content_type = row["storage_key"], str(row["content_type"])
        if row["status"] == PENDING:
            try:
                outcome = fetch_and_store(database, fetcher, store, clinic_id, int(row["id"]), max_bytes=max_bytes)
            except RetryFetch:
                continue
            key = outcome.storage_key
        if not key or content_type.split(";")[0].strip().lower() not in VISION_TYPES:
            continue
        try:
            data = store.get(str(key))
        except KeyError:
            continue
        images.append(f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}")
    return tuple(images)


def stale_pending_media(session: Session, after_s: float, batch: int) -> list[int]:
    """Media rows still pending after ``after_s`` (each at most once per deadline): for the sweeper."""
    return [int(r[0]) for r in session.execute(text(_STALE_PENDING), {"after": after_s, "batch": batch})]


def conversation_media(session: Session, conversation_id: int) -> list[dict[str, Any]]:
    return [
        dict(r) for r in session.execute(text(MEDIA_OF_CONVERSATION), {"conversation_id": conversation_id}).mappings()
    ]
