"""The consent ledger's one writer and its reader for bare phone numbers.

Every consent fact goes through ``record_consent``: the append-only ledger row
and the client's consent columns change together, in the caller's transaction,
by the rules of ``domain.compliance.ConsentRecord`` (what STOP, START, a
marketing grant... do).  Callers: the pipeline's keyword handling (psycopg, in
pipeline mode), the carrier's unsubscribe verdict, staff recording consent
given in person, a client-list import (``scripts/client_import.py``).  (The
webhook app's chat handover writes its ``request`` row itself: it imports
nothing of ours, and a request changes no state.)
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from db.engine import driver_connection
from domain.compliance import NUMBER_SOURCES, ConsentKind, ConsentRecord, ConsentScope

_INSERT = """
INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, scope, source, wording, given_at, given_via)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
# Columns ``ConsentRecord.client_changes`` may set (never interpolated from anywhere else).
_CLIENT_COLUMNS = frozenset({"consent_state", "marketing_consent"})


def record_consent(
    conn: psycopg.Connection[Any] | Session | Connection,
    clinic_id: int,
    client_id: int | None,
    phone: str | None,
    record: ConsentRecord,
) -> None:
    """Append ``record`` to the ledger and apply it to the client (when there is one).  Statements only: the
    caller's transaction commits them (on a pipeline-mode connection they travel with its next round trip)."""
    if not isinstance(conn, psycopg.Connection):
        conn = driver_connection(conn)
    conn.execute(
        _INSERT,
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
    changes = record.client_changes()
    if client_id is None or not changes:
        return
    assert set(changes) <= _CLIENT_COLUMNS
    assignments = ", ".join(f"{column} = %s" for column in changes)
    conn.execute(f"UPDATE clients SET {assignments} WHERE id = %s", (*changes.values(), client_id))


def number_opted_out(session: Session, phone: str) -> bool:
    """Whether a phone number with no client record (staff notifications) stands opted out: its latest opt-in or
    opt-out in the ledger, counting only records the number itself, its carrier or staff made (a web form
    cannot speak for a number) and only the scopes that cover staff notifications."""
    latest = session.execute(
        text(
            """SELECT kind FROM consent_events
               WHERE phone_e164 = :phone AND kind IN (:opt_in, :opt_out) AND scope IN (:all, :transactional)
                 AND source = ANY(:sources)
               ORDER BY id DESC LIMIT 1"""
        ),
        {
            "phone": phone,
            "opt_in": ConsentKind.OPT_IN.value,
            "opt_out": ConsentKind.OPT_OUT.value,
            "all": ConsentScope.ALL.value,
            "transactional": ConsentScope.TRANSACTIONAL.value,
            "sources": sorted(s.value for s in NUMBER_SOURCES),
        },
    ).scalar_one_or_none()
    return latest == ConsentKind.OPT_OUT.value
