"""The webhook app's few reads and writes for web chat sessions (async psycopg, RLS-scoped).

A chat session only ever touches a ``chat`` conversation: every read and write here that takes a conversation
from a token also requires ``channel = 'chat'`` — a token minted (or forged, with a leaked secret) for an SMS
conversation's id reads nothing and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from db.consent import consent_statements
from db.directory import SET_CLINIC_SQL
from domain.compliance import handover_request
from webhooks.chat_tokens import ChatClaims


@dataclass(frozen=True)
class ChatClinic:
    id: int
    name: str
    origins: frozenset[str]


class ChatStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._clinics: dict[str, ChatClinic] = {}
        self._loaded_at = 0.0

    async def _load(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, name, public_key, chat_origins FROM clinics")
            rows = await cur.fetchall()
        self._clinics = {r[2]: ChatClinic(int(r[0]), r[1], frozenset(r[3] or [])) for r in rows}
        self._loaded_at = time.monotonic()

    async def clinic_by_key(self, key: str) -> ChatClinic | None:
        if time.monotonic() - self._loaded_at > 30 or key not in self._clinics:
            await self._load()
        return self._clinics.get(key)

    async def origin_known(self, origin: str) -> bool:
        if time.monotonic() - self._loaded_at > 30:
            await self._load()
        return any(origin in clinic.origins for clinic in self._clinics.values())

    async def create_session(self, clinic_id: int, session_id: str, origin: str, expires_at: int) -> tuple[int, int]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            cur = await conn.execute(
                "INSERT INTO clients (clinic_id, tags) VALUES (%s, ARRAY['web-chat']) RETURNING id", (clinic_id,)
            )
            client_id = (await cur.fetchone())[0]  # type: ignore[index]
            cur = await conn.execute(
                "INSERT INTO conversations (clinic_id, client_id, channel) VALUES (%s, %s, 'chat') RETURNING id",
                (clinic_id, client_id),
            )
            conversation_id = (await cur.fetchone())[0]  # type: ignore[index]
            await conn.execute(
                """INSERT INTO chat_sessions (clinic_id, token_id, client_id, conversation_id, origin, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (clinic_id, session_id, client_id, conversation_id, origin, datetime.fromtimestamp(expires_at, UTC)),
            )
        return int(client_id), int(conversation_id)

    async def session_active(self, claims: ChatClaims) -> bool:
        """The session behind a verified token is still good: its row exists and matches the token, it is not
        revoked or expired, and its conversation is a chat conversation.  (A valid signature alone proves only
        who issued the token.)"""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(claims.clinic_id),))
            cur = await conn.execute(
                """SELECT EXISTS (
                       SELECT 1 FROM chat_sessions s JOIN conversations c ON c.id = s.conversation_id
                       WHERE s.token_id = %s AND s.clinic_id = %s AND s.conversation_id = %s AND s.client_id = %s
                         AND s.revoked_at IS NULL AND s.expires_at > now() AND c.channel = 'chat')""",
                (claims.session_id, claims.clinic_id, claims.conversation_id, claims.client_id),
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def history(self, clinic_id: int, conversation_id: int, limit: int = 100) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            cur = await conn.execute(
                """SELECT m.id, m.role, m.body, m.created_at, m.meta FROM messages m
                   JOIN conversations c ON c.id = m.conversation_id AND c.channel = 'chat'
                   WHERE m.conversation_id = %s AND m.role IN ('user', 'assistant', 'staff') AND m.body <> ''
                   ORDER BY m.id DESC LIMIT %s""",
                (conversation_id, limit),
            )
            rows = await cur.fetchall()
        items = []
        for row in reversed(rows):
            item: dict[str, Any] = {"id": f"m{row[0]}", "role": row[1], "text": row[2], "at": row[3].isoformat()}
            if row[4] and row[4].get("quick_replies"):
                item["quick_replies"] = row[4]["quick_replies"]
            items.append(item)
        return items

    async def record_handover(self, clinic_id: int, client_id: int, e164: str, consent_text: str) -> None:
        """The chat patient asked to continue by text at ``e164``: a ledger ``request`` with the form's wording,
        for the web chat's client.  It grants nothing — not to that number, nor to any client who has it: anyone
        can type any number into a form, and only the number itself can confirm (by texting the clinic).  Nor
        does it lift an opt-out (a request is never read as consent: ``domain.compliance``, ``db.consent``)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SET_CLINIC_SQL, (str(clinic_id),))
            # The ledger's own statements (``db.consent``): a request changes no client column.
            for sql, params in consent_statements(clinic_id, client_id, e164, handover_request(consent_text)):
                await conn.execute(sql, params)
            await conn.execute(
                "UPDATE clients SET notes = notes || %s WHERE id = %s",
                (f"\nAsked to continue by text at {e164} (web chat).", client_id),
            )
