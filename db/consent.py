"""The consent ledger's one writer and its reader for bare phone numbers.

Every consent fact goes through ``consent_statements``: the append-only ledger row and the client's consent
columns change together, in the caller's transaction, by the rules of ``domain.compliance.ConsentRecord`` (what
STOP, START, a marketing grant... do).  ``record_consent`` executes them on a worker or script connection: the
pipeline's keyword handling (psycopg, in pipeline mode), the carrier's unsubscribe verdict (``worker/outbox``),
staff recording consent given in person, a client-list import (``scripts/client_import.py``).  The webhook app's
chat handover executes the same statements on its async connection (``webhooks/chat_store.py``).

Import-light on purpose (psycopg and the pure domain only, no SQLAlchemy at import time): the webhook app imports
this module, and nothing of the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from domain.compliance import NUMBER_SOURCES, ConsentKind, ConsentRecord, ConsentScope

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

INSERT_CONSENT_EVENT = """
INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, scope, source, wording, given_at, given_via)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
# The latest opt-in or opt-out a bare number made (see ``number_opted_out``).
_NUMBER_LATEST = """
SELECT kind FROM consent_events
WHERE phone_e164 = %s AND kind = ANY(%s) AND scope = ANY(%s) AND source = ANY(%s)
ORDER BY id DESC LIMIT 1
"""
# Columns ``ConsentRecord.client_changes`` may set (never interpolated from anywhere else).
_CLIENT_COLUMNS = frozenset({"consent_state", "marketing_consent"})

Statement = tuple[str, tuple[Any, ...]]


def consent_statements(
    clinic_id: int, client_id: int | None, phone: str | None, record: ConsentRecord
) -> list[Statement]:
    """The statements that record ``record``: its ledger row, then the client's columns (when there is a client
    and the record changes them).  Run them in one transaction, in order."""
    statements: list[Statement] = [
        (
            INSERT_CONSENT_EVENT,
            (
                clinic_id,
                client_id,
                phone,
                record.kind.value,
                record.scope.value,
                record.source.value,
                record.wording,
                record.given_at,
                record.given_via,
            ),
        )
    ]
    changes = record.client_changes()
    if client_id is not None and changes:
        assert set(changes) <= _CLIENT_COLUMNS
        assignments = ", ".join(f"{column} = %s" for column in changes)
        statements.append((f"UPDATE clients SET {assignments} WHERE id = %s", (*changes.values(), client_id)))
    return statements


def _psycopg(conn: psycopg.Connection[Any] | Session | Connection) -> psycopg.Connection[Any]:
    if isinstance(conn, psycopg.Connection):
        return conn
    from db.engine import psycopg_connection  # SQLAlchemy only where a caller holds a session

    return psycopg_connection(conn)


def record_consent(
    conn: psycopg.Connection[Any] | Session | Connection,
    clinic_id: int,
    client_id: int | None,
    phone: str | None,
    record: ConsentRecord,
) -> None:
    """Append ``record`` to the ledger and apply it to the client (when there is one).  Statements only: the
    caller's transaction commits them (on a pipeline-mode connection they travel with its next round trip)."""
    driver = _psycopg(conn)
    for sql, params in consent_statements(clinic_id, client_id, phone, record):
        driver.execute(sql, params)


def number_opted_out(conn: psycopg.Connection[Any] | Session | Connection, phone: str) -> bool:
    """Whether a phone number with no client record (staff notifications) stands opted out: its latest opt-in or
    opt-out in the ledger, counting only records the number itself, its carrier or staff made (a web form
    cannot speak for a number) and only the scopes that cover staff notifications."""
    latest = (
        _psycopg(conn)
        .execute(
            _NUMBER_LATEST,
            (
                phone,
                [ConsentKind.OPT_IN.value, ConsentKind.OPT_OUT.value],
                [ConsentScope.ALL.value, ConsentScope.TRANSACTIONAL.value],
                sorted(s.value for s in NUMBER_SOURCES),
            ),
        )
        .fetchone()
    )
    return latest is not None and latest[0] == ConsentKind.OPT_OUT.value
