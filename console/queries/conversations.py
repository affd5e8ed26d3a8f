"""The inbox (handoffs first, most urgent on top, then the most recent) and one conversation's messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.queries.clients import OWN_PATIENT
from domain.agent_state import AgentState
from domain.staff_access import HANDOFF_URGENCY_ORDER

# rank: 1..4 = a handoff by urgency (HANDOFF_URGENCY_ORDER), 9 = with the agent.  Keyset pagination on
# (rank ASC, last activity DESC, id DESC), the order the front desk reads the inbox in.
WITH_THE_AGENT = 9
INBOX_RANKS = range(1, WITH_THE_AGENT + 1)  # what a cursor's rank may be (any other is not one we issued)
_INBOX = f"""
SELECT * FROM (
    SELECT v.id, v.channel, v.client_id, cl.name AS client_name, cl.phone_e164 AS client_phone, v.agent_state,
           v.handoff_reason, v.handoff_urgency, v.last_message_at, v.last_inbound_seq > v.answered_seq AS unanswered,
           CASE WHEN lower(v.agent_state) = :handoff
                THEN coalesce(array_position(CAST(:urgencies AS text[]), coalesce(v.handoff_urgency, 'normal')), 3)
                ELSE {WITH_THE_AGENT} END AS rank,
           coalesce(v.last_message_at, v.created_at) AS activity_at,
           (SELECT left(m.body, 160) FROM messages m WHERE m.conversation_id = v.id AND m.body <> ''
              AND (m.role IN ('user', 'staff') OR (m.role = 'assistant' AND m.direction = 'outbound'))
            ORDER BY m.id DESC LIMIT 1) AS preview
    FROM conversations v JOIN clients cl ON cl.id = v.client_id
    WHERE {OWN_PATIENT.format(client="v.client_id")}
) inbox
WHERE (CAST(:handoffs_only AS boolean) IS NOT TRUE OR rank < {WITH_THE_AGENT})
  AND (CAST(:after_rank AS int) IS NULL
       OR rank > CAST(:after_rank AS int)
       OR (rank = CAST(:after_rank AS int) AND (activity_at < CAST(:after_at AS timestamptz)
           OR (activity_at = CAST(:after_at AS timestamptz) AND id < CAST(:after_id AS bigint)))))
ORDER BY rank, activity_at DESC, id DESC
LIMIT :limit
"""
_CONVERSATION = f"""
SELECT v.id, v.channel, v.client_id, cl.name AS client_name, cl.phone_e164 AS client_phone, cl.consent_state,
       v.agent_state, v.handoff_reason, v.handoff_urgency, v.last_message_at,
       {OWN_PATIENT.format(client="v.client_id")} AS within_reach
FROM conversations v JOIN clients cl ON cl.id = v.client_id WHERE v.id = :conversation_id
"""
# What staff read of a transcript: the patient's, the agent's sent replies and staff messages (not tool calls,
# system notes or internal drafts) — the same filter as `medspa staff show`.
_MESSAGES = """
SELECT id, direction, role, body, channel, created_at, meta->>'staff' AS staff_name
FROM messages
WHERE conversation_id = :conversation_id AND (body <> '' OR jsonb_exists(meta, 'media'))
  AND (role IN ('user', 'staff') OR (role = 'assistant' AND direction = 'outbound'))
  AND (CAST(:before_id AS bigint) IS NULL OR id < CAST(:before_id AS bigint))
ORDER BY id DESC LIMIT :limit
"""


def inbox(
    session: Session,
    *,
    provider_id: int | None,
    handoffs_only: bool,
    after: tuple[int, datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = session.execute(
        text(_INBOX),
        {
            "handoff": AgentState.HANDOFF.value,
            "urgencies": list(HANDOFF_URGENCY_ORDER),
            "provider_id": provider_id,
            "handoffs_only": handoffs_only,
            "after_rank": after[0] if after else None,
            "after_at": after[1] if after else None,
            "after_id": after[2] if after else None,
            "limit": limit,
        },
    ).mappings()
    return [dict(r) for r in rows]


def conversation(session: Session, conversation_id: int, provider_id: int | None) -> dict[str, Any] | None:
    row = (
        session.execute(text(_CONVERSATION), {"conversation_id": conversation_id, "provider_id": provider_id})
        .mappings()
        .one_or_none()
    )
    return dict(row) if row else None


def messages(session: Session, conversation_id: int, *, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    params = {"conversation_id": conversation_id, "before_id": before_id, "limit": limit}
    return [dict(r) for r in session.execute(text(_MESSAGES), params).mappings()]


# The photos of a page of messages (what staff see with the transcript), and one photo for the file endpoint —
# with whether the caller's role reaches its patient.
_MEDIA_OF_MESSAGES = """
SELECT id, message_id, position, content_type, status, size_bytes
FROM message_media WHERE message_id = ANY(CAST(:message_ids AS bigint[])) ORDER BY message_id, position
"""
_MEDIA_ITEM = f"""
SELECT mm.id, mm.conversation_id, mm.content_type, mm.status, mm.storage_key, v.client_id,
       {OWN_PATIENT.format(client="v.client_id")} AS within_reach
FROM message_media mm JOIN conversations v ON v.id = mm.conversation_id WHERE mm.id = :media_id
"""


def media_of_messages(session: Session, message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    by_message: dict[int, list[dict[str, Any]]] = {}
    if not message_ids:
        return by_message
    for row in session.execute(text(_MEDIA_OF_MESSAGES), {"message_ids": message_ids}).mappings():
        by_message.setdefault(int(row["message_id"]), []).append(dict(row))
    return by_message


def media_item(session: Session, media_id: int, provider_id: int | None) -> dict[str, Any] | None:
    row = (
        session.execute(text(_MEDIA_ITEM), {"media_id": media_id, "provider_id": provider_id}).mappings().one_or_none()
    )
    return dict(row) if row else None


_REACHABLE = f"SELECT v.id FROM conversations v WHERE {OWN_PATIENT.format(client='v.client_id')}"


def reachable_ids(session: Session, provider_id: int) -> frozenset[int]:
    """The conversations a provider may see (their own patients'): what the live inbox names for them."""
    return frozenset(int(i) for i in session.execute(text(_REACHABLE), {"provider_id": provider_id}).scalars())
