"""The live inbox's events: one Redis stream per clinic (``console:inbox:{clinic_id}``) that the staff console
reads and streams to open inbox pages as server-sent events (``console/live.py``).

Written after a commit — a turn (new patient messages, the agent's replies, a handoff), a quarantine, a staff
action — never inside a transaction.  An event carries ids and an urgency, never a name or a message body: the
console re-reads the inbox through its access checks.  Publishing fails open: a live page that misses an event
still refreshes on its own, and nothing a patient needs depends on it.

Why a Redis stream and not Postgres LISTEN/NOTIFY: a NOTIFY takes a database-wide lock at commit, which every
turn commit would queue on; one XADD after the commit costs the turn a Redis round trip and nothing else — and
only while someone watches: an open inbox page refreshes ``console:inbox:listening:{clinic_id}`` (a key with a
TTL), and a worker process checks that key at most every ``LISTENING_CHECK_S`` per clinic (every second while
nobody watches), so a clinic with no console open costs its turns one EXISTS a second per process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Protocol

from domain.conversation import Handoff
from worker.sending import enqueue

log = logging.getLogger(__name__)
STREAM_MAXLEN = 1000  # per clinic: a browser reconnecting within minutes resumes from its Last-Event-ID
LISTENING_TTL_S = 60  # an open stream refreshes its clinic's key well within this
LISTENING_CHECK_S = 5.0
_listening: dict[int, tuple[float, bool]] = {}
_listening_lock = threading.Lock()


class _Redis(Protocol):
    def xadd(self, name: str, fields: Any, *, maxlen: int | None = ..., approximate: bool = ...) -> Any: ...


class _HasRedis(Protocol):
    @property
    def redis(self) -> Any: ...


def stream_key(clinic_id: int) -> str:
    return f"console:inbox:{clinic_id}"


def listening_key(clinic_id: int) -> str:
    return f"console:inbox:listening:{clinic_id}"


def someone_listening(redis_client: Any, clinic_id: int) -> bool:
    """Whether an inbox page of the clinic is open (checked in Redis at most every LISTENING_CHECK_S)."""
    now = time.monotonic()
    with _listening_lock:
        cached = _listening.get(clinic_id)
    # A "yes" is trusted for LISTENING_CHECK_S, a "no" for a second: a page just opened gets events at once.
    if cached is not None and now - cached[0] < (LISTENING_CHECK_S if cached[1] else 1.0):
        return cached[1]
    try:
        listening = bool(redis_client.exists(listening_key(clinic_id)))
    except Exception:  # noqa: BLE001 - fails open: publish (the XADD then fails or succeeds on its own)
        listening = True
    with _listening_lock:
        _listening[clinic_id] = (now, listening)
    return listening


def inbox_event(kind: str, conversation_id: int, urgency: str | None = None) -> dict[str, Any]:
    """``kind``: message | handoff | taken_over | replied | handed_back."""
    return {"kind": kind, "conversation_id": conversation_id, "urgency": urgency}


def publish(redis_client: _Redis, clinic_id: int, event: dict[str, Any]) -> None:
    try:
        redis_client.xadd(stream_key(clinic_id), {"data": json.dumps(event)}, maxlen=STREAM_MAXLEN, approximate=True)
    except Exception as exc:  # noqa: BLE001 - fails open: the page refreshes on its own
        log.warning("live inbox event not published", extra={"clinic_id": clinic_id, "error": type(exc).__name__})


def announce_turn(container: _HasRedis, clinic_id: int, conversation_id: int, handoff: Handoff | None) -> None:
    """After a turn's (or a quarantine's) commit: tell open consoles, and start the handoff notification."""
    kind = "handoff" if handoff is not None else "message"
    if someone_listening(container.redis, clinic_id):
        publish(container.redis, clinic_id, inbox_event(kind, conversation_id, handoff.urgency if handoff else None))
    if handoff is None:
        return
    try:
        enqueue("notify_handoffs", clinic_id)
    except Exception as exc:  # noqa: BLE001 - the alert is committed; the scheduled sweep notifies within 30 s
        log.warning(
            "notify_handoffs not enqueued; the sweep will notify",
            extra={"clinic_id": clinic_id, "conversation_id": conversation_id, "error": type(exc).__name__},
        )
