"""The snapshot a turn works from: pending messages, history and upcoming appointments, read in the round trip
that takes the lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from db.engine import commit_pipeline
from domain.agent_loop import EARLIER_TEXTS_SCREENED, EARLIER_TEXTS_WITHIN
from domain.conversation import ClinicProfile, PatientProfile, TurnInput
from domain.ports import ChatMessage
from worker.appointments.store import UPCOMING_OF_CONVERSATION, upcoming_views
from worker.conversations.lease import _HEAD, _TAKE_LEASE, _head
from worker.conversations.rows import Conn, Cursor, Lease, PendingMessage, Snapshot, StaleTurn

# ------------------------------------------------------------------ snapshot
# The snapshot reads take the answered mark from the row itself, so they can travel in the same round trip as
# the statement that takes the lease (which reads the same row under the same lock).
# The pending messages (after the answered mark, by sequence) and the history window (up to it, newest first) in
# one statement: two index scans, each branch planned as before, one statement fewer a turn.
_ANSWERED = "(SELECT answered_seq FROM conversations WHERE id = %(id)s)"
# ``recent``: a history message young enough for the safety screen to read with the pending ones
# (``domain.agent_loop.EARLIER_TEXTS_WITHIN``), by the database's clock, which stamped ``created_at``.
_MESSAGES = f"""
(SELECT true AS pending, id, inbound_seq, role, body, meta, true AS recent FROM messages
 WHERE conversation_id = %(id)s AND inbound_seq > {_ANSWERED} ORDER BY conversation_id, inbound_seq)
UNION ALL
(SELECT false, id, inbound_seq, role, body, NULL, created_at > now() - make_interval(secs => %(recent_s)s)
 FROM messages
 WHERE conversation_id = %(id)s AND role IN ('user', 'assistant', 'staff') AND body <> ''
   AND (inbound_seq IS NULL OR inbound_seq <= {_ANSWERED})
 ORDER BY conversation_id DESC, id DESC LIMIT %(n)s)
"""


@dataclass
class _QueuedSnapshot:
    """Statements sent but not yet waited for: the head (with or without taking the lease) and the reads."""

    conversation_id: int
    owner: str
    head: psycopg.Cursor[Any]
    messages: psycopg.Cursor[Any]
    upcoming: psycopg.Cursor[Any]
    lease: Lease | None = None  # set when the caller already holds the lease (``load_snapshot``)
    taken_at: float = 0.0  # monotonic, before the transaction that takes the lease

    def result(self, clinic_id: int, quarantine_after: int | None = None) -> tuple[Snapshot | None, Lease | None]:
        """(snapshot, None) normally; (snapshot, lease) when the lease was taken by a conversation that failed too
        often (quarantine it — after the safety screen has read its messages); (None, None) when another worker
        holds the lease or nothing is unanswered."""
        row = self.head.fetchone()
        messages, upcoming = self.messages.fetchall(), self.upcoming.fetchall()
        if row is None:
            return None, None
        head = _head(self.conversation_id, self.owner, row, self.taken_at)
        if self.lease is not None:
            head = replace(head, lease=self.lease)  # the lease stays the one this worker holds
        failing = head.lease if quarantine_after is not None and head.lease.failed_turns > quarantine_after else None
        return Snapshot(
            lease=head.lease,
            clinic_id=clinic_id,
            client_id=head.client_id,
            channel=head.channel,
            client_phone=head.phone,
            consent_state=head.consent_state,
            agent_state=head.agent_state,
            slots=head.slots,
            answered_seq=head.answered_seq,
            # Each part in its own order whatever order the branches come back in: pending by sequence, history
            # oldest first (read newest first, up to the window).
            pending=[
                PendingMessage(int(id_), int(seq), body, meta or {})
                for is_pending, id_, seq, _role, body, meta, _recent in sorted(messages, key=lambda r: r[2] or 0)
                if is_pending
            ],
            history=[
                ChatMessage(role="assistant" if role == "staff" else role, content=body)
                for is_pending, _id, _seq, role, body, _meta, _recent in sorted(messages, key=lambda r: r[1])
                if not is_pending
            ],
            recent_inbound=[
                body
                for is_pending, _id, _seq, role, body, _meta, recent in sorted(messages, key=lambda r: r[1])
                if not is_pending and recent and role == "user"
            ][-EARLIER_TEXTS_SCREENED:],
            upcoming=upcoming_views(upcoming),
            client_name=head.name,
            client_email=head.email,
            sms_status=head.sms_status,
        ), failing


def _queue_snapshot_reads(
    conn: Conn, conversation_id: int, history_window: int, now: datetime | None
) -> tuple[Cursor, Cursor]:
    params = {
        "id": conversation_id,
        "n": history_window,
        "now": now,
        "recent_s": EARLIER_TEXTS_WITHIN.total_seconds(),
    }
    return conn.execute(_MESSAGES, params), conn.execute(UPCOMING_OF_CONVERSATION, params)


def _queue_lease_and_snapshot(
    conn: Conn, conversation_id: int, owner: str, lease_seconds: int, history_window: int, now: datetime | None
) -> _QueuedSnapshot:
    taken_at = time.monotonic()
    head = conn.execute(_TAKE_LEASE, {"id": conversation_id, "owner": owner, "secs": lease_seconds})
    reads = _queue_snapshot_reads(conn, conversation_id, history_window, now)
    return _QueuedSnapshot(conversation_id, owner, head, *reads, taken_at=taken_at)


def lease_and_load(
    conn: Conn,
    clinic_id: int,
    conversation_id: int,
    owner: str,
    lease_seconds: int,
    history_window: int,
    quarantine_after: int,
    *,
    now: datetime | None = None,
) -> tuple[Snapshot | None, Lease | None]:
    """Take the lease and load the snapshot, in one round trip with the COMMIT.  See ``_QueuedSnapshot``.
    ``now``: the turn's clock, for which appointments are upcoming (None: the database's)."""
    queued = _queue_lease_and_snapshot(conn, conversation_id, owner, lease_seconds, history_window, now)
    commit_pipeline(conn)
    return queued.result(clinic_id, quarantine_after)


def load_snapshot(
    conn: Conn, clinic_id: int, lease: Lease, history_window: int, *, now: datetime | None = None
) -> Snapshot:
    """The snapshot for the next turn of a lease this worker still holds (newer messages arrived)."""
    queued = _QueuedSnapshot(
        lease.conversation_id,
        lease.owner,
        conn.execute(_HEAD, (lease.conversation_id,)),
        *_queue_snapshot_reads(conn, lease.conversation_id, history_window, now),
        lease=lease,
    )
    snapshot, _ = queued.result(clinic_id)
    if snapshot is None:
        raise StaleTurn(f"conversation {lease.conversation_id} is gone")
    return snapshot


def turn_input(snapshot: Snapshot, clinic: ClinicProfile, now: datetime, trace_id: str) -> TurnInput:
    return TurnInput(
        clinic=clinic,
        patient=PatientProfile(
            client_id=snapshot.client_id,
            name=snapshot.client_name,
            email=snapshot.client_email,
            consent_state=snapshot.consent_state,
            upcoming=tuple(snapshot.upcoming),
        ),
        conversation_id=snapshot.lease.conversation_id,
        channel=snapshot.channel,
        agent_state=snapshot.agent_state,
        slots=snapshot.slots,
        history=tuple(snapshot.history),
        new_messages=tuple(m.body for m in snapshot.pending if "compliance" not in m.meta),
        now=now,
        trace_id=trace_id,
        may_continue=snapshot.may_continue,
    )
